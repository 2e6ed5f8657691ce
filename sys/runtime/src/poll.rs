//! A single-threaded poll loop with timers: what services use instead of
//! threads.
//!
//! Work comes from two places: pollers, called on every turn (a network
//! stack driving its device, say), and timers, called once or periodically
//! at their deadline. Callbacks get a [`Control`] through which they read
//! the loop's clock, schedule or cancel timers, and stop the loop. Nothing
//! is preempted, so callbacks share state through plain `RefCell`s.
//!
//! A turn in which nothing happened ends in a sleep ([`hal::wait_until`])
//! until the next timer's deadline, the earliest time a poller asked for
//! ([`Control::wake_by`]), or a device interrupt, whichever comes first.
//! Pollers run again after any device interrupt, so one whose device
//! interrupts needs nothing more; one with deadlines of its own (a network
//! stack's retransmissions) or a source that cannot interrupt asks for its
//! next turn with `wake_by`.

use alloc::{boxed::Box, vec::Vec};
use core::time::Duration;

use hal::clock::Instant;

/// What one [`PollLoop::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// A poller made progress or a timer ran.
    pub progress: bool,
    /// A callback stopped the loop with this status.
    pub stopped: Option<i32>,
}

/// Identifies a timer, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

type Callback<'a> = Box<dyn FnMut(&mut Control<'a>) + 'a>;
type Poller<'a> = Box<dyn FnMut(&mut Control<'a>) -> bool + 'a>;

struct Timer<'a> {
    id: TimerId,
    deadline: Instant,
    period: Option<Duration>,
    callback: Callback<'a>,
}

/// What a callback may do to the loop that called it.
pub struct Control<'a> {
    now: Instant,
    next_id: u64,
    added: Vec<Timer<'a>>,
    cancelled: Vec<TimerId>,
    stop: Option<i32>,
    /// The earliest next turn a poller asked for during this turn.
    wake_by: Option<Instant>,
}

impl<'a> Control<'a> {
    /// The loop's time at the start of this turn.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Calls `f` once, `delay` from now.
    pub fn after(&mut self, delay: Duration, f: impl FnMut(&mut Control<'a>) + 'a) -> TimerId {
        self.add(delay, None, Box::new(f))
    }

    /// Calls `f` every `period`, first `period` from now.
    pub fn every(&mut self, period: Duration, f: impl FnMut(&mut Control<'a>) + 'a) -> TimerId {
        self.add(period, Some(period), Box::new(f))
    }

    /// Cancels a timer; unknown or already-fired ids are ignored.
    pub fn cancel(&mut self, id: TimerId) {
        self.cancelled.push(id);
    }

    /// Asks for another turn by `at` at the latest, even if no timer is due
    /// and no device interrupts (for this turn's sleep only: a poller asks
    /// again every turn).
    pub fn wake_by(&mut self, at: Instant) {
        self.wake_by = Some(self.wake_by.map_or(at, |w| w.min(at)));
    }

    /// Ends [`PollLoop::run`] with `status` after the current callback.
    pub fn stop(&mut self, status: i32) {
        self.stop.get_or_insert(status);
    }

    fn add(
        &mut self,
        delay: Duration,
        period: Option<Duration>,
        callback: Callback<'a>,
    ) -> TimerId {
        let id = TimerId(self.next_id);
        self.next_id += 1;
        self.added.push(Timer {
            id,
            deadline: self.now.saturating_add(delay),
            period,
            callback,
        });
        id
    }
}

/// The loop. Build it, add timers and pollers, then [`PollLoop::run`].
pub struct PollLoop<'a> {
    /// Kept sorted by deadline, earliest last, so popping is cheap.
    timers: Vec<Timer<'a>>,
    pollers: Vec<Poller<'a>>,
    control: Control<'a>,
}

impl Default for PollLoop<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> PollLoop<'a> {
    pub fn new() -> Self {
        PollLoop {
            timers: Vec::new(),
            pollers: Vec::new(),
            control: Control {
                now: Instant::now(),
                next_id: 0,
                added: Vec::new(),
                cancelled: Vec::new(),
                stop: None,
                wake_by: None,
            },
        }
    }

    /// See [`Control::after`].
    pub fn after(&mut self, delay: Duration, f: impl FnMut(&mut Control<'a>) + 'a) -> TimerId {
        self.control.now = Instant::now();
        let id = self.control.after(delay, f);
        self.absorb();
        id
    }

    /// See [`Control::every`].
    pub fn every(&mut self, period: Duration, f: impl FnMut(&mut Control<'a>) + 'a) -> TimerId {
        self.control.now = Instant::now();
        let id = self.control.every(period, f);
        self.absorb();
        id
    }

    /// Adds a poller, called every turn; it returns whether it made
    /// progress, and the loop only sleeps when none did.
    pub fn poller(&mut self, f: impl FnMut(&mut Control<'a>) -> bool + 'a) {
        self.pollers.push(Box::new(f));
    }

    /// Number of pending timers.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// Runs until a callback calls [`Control::stop`], or until nothing is
    /// left to do (no pollers, no timers), which returns status 0.
    pub fn run(&mut self) -> i32 {
        loop {
            if let Some(status) = self.turn() {
                return status;
            }
        }
    }

    /// One turn: [`PollLoop::step`], then, if nothing happened, a sleep
    /// until the next deadline or a device interrupt. Returns the stop
    /// status.
    pub fn turn(&mut self) -> Option<i32> {
        let step = self.step();
        if step.stopped.is_some() {
            return step.stopped;
        }
        if self.timers.is_empty() && self.pollers.is_empty() {
            return Some(0);
        }
        if !step.progress {
            hal::wait_until(self.next_deadline());
        }
        None
    }

    /// Pollers, then every due timer, without waiting: for a loop that
    /// waits on its own (`runtime::service`).
    pub fn step(&mut self) -> Step {
        self.control.now = Instant::now();
        self.control.wake_by = None;
        let mut progress = false;
        for poller in &mut self.pollers {
            progress |= poller(&mut self.control);
        }
        self.absorb();
        while let Some(timer) = self.timers.last() {
            if timer.deadline > self.control.now || self.control.stop.is_some() {
                break;
            }
            let mut timer = self.timers.pop().expect("checked non-empty");
            (timer.callback)(&mut self.control);
            progress = true;
            if let Some(period) = timer.period {
                // Fixed rate, but never schedule into the past after a stall.
                let next = timer.deadline.saturating_add(period);
                timer.deadline = next.max(self.control.now);
                self.control.added.push(timer);
            }
            self.absorb();
        }
        Step {
            progress,
            stopped: self.control.stop.take(),
        }
    }

    /// When the loop next has work: the earliest timer, or the time a
    /// poller asked to be called again ([`Control::wake_by`]).
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.last().map(|t| t.deadline);
        match (timer, self.control.wake_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves timers added by callbacks into the sorted list and drops
    /// cancelled ones.
    fn absorb(&mut self) {
        let cancelled = core::mem::take(&mut self.control.cancelled);
        let added = core::mem::take(&mut self.control.added);
        self.timers.extend(added);
        self.timers.retain(|t| !cancelled.contains(&t.id));
        // Stable sort, reversed: earliest deadline last; equal deadlines
        // keep insertion order when popped.
        self.timers
            .sort_by(|a, b| b.deadline.cmp(&a.deadline).then(b.id.0.cmp(&a.id.0)));
    }
}
