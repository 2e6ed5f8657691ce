//! The checks, each returning a one-line detail or why it failed.

use alloc::{
    boxed::Box,
    format,
    rc::Rc,
    string::{String, ToString},
    vec::Vec,
};
use core::{cell::RefCell, time::Duration};

use hal::{
    clock::{self, Instant},
    entropy, virtio,
};
use runtime::poll::PollLoop;
use virtio_drivers::transport::DeviceType;

type Check = fn() -> Result<String, String>;

pub const ALL: [(&str, Check); 7] = [
    ("boot", boot),
    ("alloc", alloc_check),
    ("clock", clock_check),
    ("node-clock", node_clock_check),
    ("timers", timers),
    ("virtio", virtio_check),
    ("entropy", entropy_check),
];

fn boot() -> Result<String, String> {
    let info = runtime::boot_info();
    let to_main = runtime::entry_to_main();
    if to_main.is_zero() {
        return Err("entry-to-main time is zero: boot stamp missing".into());
    }
    Ok(format!(
        "{} {} entry->main {} us, cmdline {:?}",
        hal::ARCH,
        info.platform.name(),
        to_main.as_micros(),
        info.cmdline
    ))
}

fn alloc_check() -> Result<String, String> {
    let before = runtime::heap_stats();
    if before.size < 1 << 20 {
        return Err(format!("heap is only {} bytes", before.size));
    }
    {
        let numbers: Vec<u64> = (0..10_000).collect();
        let sum: u64 = numbers.iter().sum();
        if sum != 49_995_000 {
            return Err(format!("vector sum {sum}"));
        }
        let big = alloc::vec![0xa5u8; 1 << 20].into_boxed_slice();
        if big.iter().any(|&b| b != 0xa5) {
            return Err("1 MiB buffer lost its contents".into());
        }
        let page = Box::new(Aligned([7; 4096]));
        if !((&raw const *page) as usize).is_multiple_of(4096) || page.0.iter().any(|&b| b != 7) {
            return Err("page-aligned allocation is misaligned or corrupt".into());
        }
        let text = (0..100)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        if text.len() != 289 {
            return Err(format!("string of {} bytes", text.len()));
        }
    }
    let after = runtime::heap_stats();
    if after.used != before.used {
        return Err(format!(
            "{} bytes still in use after freeing everything",
            after.used.abs_diff(before.used)
        ));
    }
    Ok(format!(
        "heap {} KiB, {} KiB used",
        before.size / 1024,
        before.used / 1024
    ))
}

#[repr(align(4096))]
struct Aligned([u8; 4096]);

fn clock_check() -> Result<String, String> {
    let hz = clock::counter_frequency();
    if !(1_000_000..=10_000_000_000).contains(&hz) {
        return Err(format!("counter frequency {hz} Hz is implausible"));
    }
    let mut last = Instant::now();
    for _ in 0..10_000 {
        let now = Instant::now();
        if now < last {
            return Err(format!("clock went back from {last:?} to {now:?}"));
        }
        last = now;
    }
    // 2020-01-01 to 2200-01-01: an RTC outside that is unset or broken.
    let wall = clock::wall_clock_at_boot().ok_or("no RTC")?;
    if !(1_577_836_800..7_258_118_400).contains(&wall) {
        return Err(format!("RTC reads {wall} s since 1970"));
    }
    Ok(format!("counter {} MHz, RTC {wall} s", hz / 1_000_000))
}

fn uptime_ms() -> u64 {
    Instant::now().as_nanos() / 1_000_000
}

/// The node's clock is the host's `node.ms` at this start plus this VM's
/// uptime (0 plus the uptime without the key).
fn node_clock_check() -> Result<String, String> {
    let start = runtime::cmdline()
        .get("node.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let before = uptime_ms();
    let node = runtime::node_clock::now_ms();
    let after = uptime_ms();
    if !(start + before..=start + after).contains(&node) {
        return Err(format!(
            "node clock {node} ms, expected {start} ms plus an uptime of {before}..{after} ms"
        ));
    }
    Ok(format!("{node} ms: from {start} ms plus {before} ms up"))
}

/// Timers must fire in deadline order and never early, a periodic timer
/// never more often than its period allows, and a cancelled timer never;
/// the loop must have slept on timer interrupts meanwhile, not spun. (How
/// late they fire depends on the host's load, so it is reported, not
/// checked.)
fn timers() -> Result<String, String> {
    /// (timer, deadline, when it fired)
    type Firings = Vec<(&'static str, Instant, Instant)>;
    let log: Rc<RefCell<Firings>> = Rc::default();
    let mut poll = PollLoop::new();
    let start = Instant::now();
    let at = |ms| start.saturating_add(Duration::from_millis(ms));
    let record = |name: &'static str, deadline: Instant| {
        let log = log.clone();
        move |ctl: &mut runtime::poll::Control<'_>| {
            log.borrow_mut().push((name, deadline, ctl.now()));
        }
    };
    poll.after(Duration::from_millis(20), record("late", at(20)));
    poll.after(Duration::from_millis(5), record("early", at(5)));
    let doomed = poll.after(Duration::from_millis(10), record("cancelled", at(10)));
    let ticks = Rc::new(RefCell::new(0u32));
    let tick_count = ticks.clone();
    // The first tick (due at 3 ms) cancels the 10 ms timer: even if the loop
    // stalls past 10 ms, the tick is popped first, being due first.
    poll.every(Duration::from_millis(3), move |ctl| {
        *tick_count.borrow_mut() += 1;
        ctl.cancel(doomed);
    });
    poll.after(Duration::from_millis(25), |ctl| ctl.stop(7));
    let interrupts_before = hal::irq::stats().timer;
    let status = poll.run();
    let elapsed = start.elapsed();
    let timer_interrupts = hal::irq::stats().timer - interrupts_before;
    let log = log.borrow();
    if status != 7 {
        return Err(format!("loop stopped with {status}, not 7"));
    }
    let order: Vec<&str> = log.iter().map(|(name, ..)| *name).collect();
    if order != ["early", "late"] {
        return Err(format!("fired {order:?}, expected early then late"));
    }
    let mut worst = Duration::ZERO;
    for (name, deadline, fired) in log.iter() {
        if fired < deadline {
            return Err(format!("{name} fired before its deadline"));
        }
        worst = worst.max(fired.saturating_duration_since(*deadline));
    }
    let ticks = *ticks.borrow();
    let most = elapsed.as_millis() / 3;
    if ticks == 0 || u128::from(ticks) > most {
        return Err(format!(
            "3 ms timer fired {ticks} times in {} ms",
            elapsed.as_millis()
        ));
    }
    if timer_interrupts == 0 {
        return Err("the loop never slept on a timer interrupt".into());
    }
    Ok(format!(
        "order ok, {ticks} ticks, worst lateness {} us, {timer_interrupts} timer interrupts",
        worst.as_micros()
    ))
}

fn kind_name(kind: DeviceType) -> &'static str {
    match kind {
        DeviceType::Network => "net",
        DeviceType::Block => "block",
        DeviceType::Console => "console",
        DeviceType::EntropySource => "rng",
        DeviceType::Socket => "vsock",
        _ => "other",
    }
}

fn virtio_check() -> Result<String, String> {
    virtio::discover(runtime::boot_info());
    let found: Vec<&str> = virtio::device_types().into_iter().map(kind_name).collect();
    let expected = runtime::cmdline().get("expect-virtio").unwrap_or("");
    for want in expected.split(',').filter(|w| !w.is_empty()) {
        if !found.contains(&want) {
            return Err(format!("expected a virtio {want} device, found {found:?}"));
        }
    }
    Ok(format!("found {found:?}"))
}

fn distinct_draws(prefer_virtio: bool) -> Result<entropy::Source, String> {
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    let source = entropy::fill(&mut a, prefer_virtio).map_err(|e| e.to_string())?;
    entropy::fill(&mut b, prefer_virtio).map_err(|e| e.to_string())?;
    if a == b || a.iter().all(|&x| x == a[0]) {
        return Err(format!("{source:?} entropy repeats: {a:02x?}"));
    }
    Ok(source)
}

fn entropy_check() -> Result<String, String> {
    if let Some(rng) = virtio::take(DeviceType::EntropySource) {
        entropy::attach_virtio(rng).map_err(|e| e.to_string())?;
    }
    let mut sources = Vec::new();
    if entropy::cpu_source_present() {
        sources.push(distinct_draws(false)?);
    }
    if let Ok(source) = distinct_draws(true)
        && !sources.contains(&source)
    {
        sources.push(source);
    }
    let want = runtime::cmdline().get("expect-entropy").unwrap_or("any");
    let ok = match want {
        "cpu" => sources.contains(&entropy::Source::Cpu),
        "virtio" => sources.contains(&entropy::Source::Virtio),
        _ => !sources.is_empty(),
    };
    if !ok {
        return Err(format!("expected {want} entropy, have {sources:?}"));
    }
    Ok(format!("sources {sources:?}"))
}

/// Touches an address no page table maps, to test exception reporting.
pub fn fault() -> ! {
    #[cfg(target_arch = "x86_64")]
    const UNMAPPED: usize = 0x8000_0000_0000_0000; // non-canonical
    #[cfg(target_arch = "aarch64")]
    const UNMAPPED: usize = 0x80_0000_0000; // beyond the 39-bit space
    // SAFETY: deliberately faulting; the exception handler reports it and
    // powers off, so the read never completes.
    let value = unsafe { (UNMAPPED as *const u64).read_volatile() };
    panic!("read {value:#x} from an unmapped address without a fault");
}
