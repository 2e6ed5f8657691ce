//! A UDP rate measurement between two apps, for rate-limit rules:
//!
//! - `udp-send-to=A.B.C.D:PORT` (with `udp-send-seconds=N`, default 8):
//!   send 64-byte datagrams for N seconds, `udp-send-rate=R` a second, or
//!   as fast as the stack takes them without it; prints how many and
//!   `@@ metric udp_sent`. A paced sender sleeps between datagrams, so a
//!   rate test does not also spend a host core on a flood; one that fell
//!   behind (descheduled) catches up at once.
//! - `udp-count-on=PORT` (with `udp-count-seconds=N`, default 4): print
//!   `nettest: counting on PORT`, wait for the first datagram, let
//!   `udp-count-settle-ms=` (default 1000) pass, then count the datagrams
//!   of the next N seconds; prints the count and the rate
//!   (`@@ metric udp_window_packets`, `udp_window_us`).
//!
//! What a limiter lets through is measured where it arrives, not where it
//! was sent, and after the settling time: a limiter's initial burst is
//! not part of its rate.

use alloc::{format, string::String, vec};
use core::time::Duration;

use hal::clock::Instant;
use net::{NetError, Stack};

use crate::{metric, parse_endpoint};

const DATAGRAM: usize = 64;
/// How long the counter waits for the first datagram.
const FIRST_WAIT: Duration = Duration::from_secs(60);

pub fn send(
    stack: &mut Stack,
    target: &str,
    seconds: u64,
    per_second: Option<u32>,
) -> Result<String, String> {
    let to = parse_endpoint(target).ok_or(format!("bad endpoint {target:?}"))?;
    let socket = stack.udp_bind(0).map_err(|e| format!("bind: {e}"))?;
    let payload = [0x5au8; DATAGRAM];
    let gap = per_second.map(|r| Duration::from_nanos(1_000_000_000 / u64::from(r.max(1))));
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        if let Some(gap) = gap {
            let due =
                started.saturating_add(gap.saturating_mul(u32::try_from(sent).unwrap_or(u32::MAX)));
            while Instant::now() < due {
                stack.poll();
                hal::wait_until(Some(due));
            }
        }
        match stack.udp_send(socket, to, &payload) {
            Ok(()) => sent += 1,
            // The socket's buffer is full: let the stack drain it.
            Err(NetError::TooLarge) => {
                stack.poll();
            }
            Err(e) => return Err(format!("send to {to}: {e}")),
        }
    }
    stack.udp_close(socket);
    metric("udp_sent", u128::from(sent));
    Ok(format!("{sent} datagrams to {to} in {seconds} s"))
}

pub fn count(
    stack: &mut Stack,
    port: &str,
    seconds: u64,
    settle: Duration,
) -> Result<String, String> {
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let socket = stack.udp_bind(port).map_err(|e| format!("bind: {e}"))?;
    log::info!("nettest: counting on {port}");
    let mut buf = vec![0u8; 2048];
    stack
        .udp_recv(socket, &mut buf, FIRST_WAIT)
        .map_err(|e| format!("first datagram: {e}"))?;
    let first = Instant::now();
    while let Some(left) = settle.checked_sub(first.elapsed()) {
        match stack.udp_recv(socket, &mut buf, left) {
            Ok(_) => {}
            Err(NetError::Timeout) => break,
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    let window = Duration::from_secs(seconds);
    let started = Instant::now();
    let mut packets = 0u64;
    let mut bytes = 0u64;
    while let Some(left) = window.checked_sub(started.elapsed()) {
        match stack.udp_recv(socket, &mut buf, left) {
            Ok((n, _)) => {
                packets += 1;
                bytes += n as u64;
            }
            Err(NetError::Timeout) => break,
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    let took = started.elapsed().as_micros();
    stack.udp_close(socket);
    metric("udp_window_packets", u128::from(packets));
    metric("udp_window_us", took);
    Ok(format!(
        "{packets} datagrams ({bytes} bytes) in {took} us: {} per second",
        u128::from(packets) * 1_000_000 / took.max(1)
    ))
}
