//! Measurements for `cargo xtask bench network`, each against a host
//! server the benchmark runs, each printing `@@ metric` lines:
//!
//! - `rtt-to=A.B.C.D:PORT` (with `rtt-count=`, default 200): one TCP
//!   connection to an echo server, 64 bytes out and back each time;
//!   `tcp_rtt_p50_us`, `tcp_rtt_min_us`.
//! - `udp-rtt-to=A.B.C.D:PORT` (with `rtt-count=`): 64-byte datagrams to a
//!   UDP echo server, one at a time; `udp_rtt_p50_us`, `udp_rtt_min_us`.
//! - `connect-to=A.B.C.D:PORT` (with `connect-count=`, default 200):
//!   connections opened and closed one after the other against a server
//!   that accepts and closes; `connects` and `connect_total_us`.
//! - `udp-flows-to=A.B.C.D:PORT` (with `udp-flows=`, default 5000): one
//!   datagram from each of that many local ports to a UDP echo server,
//!   each a new flow for any NAT on the way, 64 at a time at most 500 a
//!   second, until a batch goes unanswered; then the first port again, and one port never used:
//!   `udp_flows_answered`, `udp_old_flow_answered` and
//!   `udp_new_flow_answered` (1 or 0): how many concurrent flows a NAT
//!   admits, and whether it still serves the flows it has and refuses new
//!   ones once full.

use alloc::{format, string::String, vec::Vec};
use core::time::Duration;

use embedded_io::{Read, Write};
use hal::clock::Instant;
use net::{IpEndpoint, Stack};

use crate::{connect, metric, parse_endpoint};

/// The size of each echoed message: a small packet.
const MESSAGE: usize = 64;
/// How long one UDP answer may take before the flow counts as refused.
const UDP_ANSWER: Duration = Duration::from_millis(500);
/// Flows opened at once in the sweep.
const BATCH: u16 = 64;
/// The first local port of the flow sweep, below the stack's ephemeral
/// ports (from `EPHEMERAL_START`).
const FLOW_PORT_BASE: u16 = 20000;
const EPHEMERAL_START: u16 = 49152;

/// The median and the minimum of samples in microseconds.
fn p50_min(mut samples: Vec<u128>) -> Option<(u128, u128)> {
    samples.sort_unstable();
    Some((*samples.get(samples.len() / 2)?, *samples.first()?))
}

/// Runs every measurement the command line asks for; whether all passed.
pub fn run(stack: &mut Stack) -> bool {
    let params = runtime::cmdline();
    let count = |key: &str, default: usize| {
        params
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut ok = true;
    if let Some(target) = params.get("rtt-to") {
        let n = count("rtt-count", 200);
        ok &= runtime::check("tcp-rtt", || tcp_rtt(stack, target, n));
    }
    if let Some(target) = params.get("udp-rtt-to") {
        let n = count("rtt-count", 200);
        ok &= runtime::check("udp-rtt", || udp_rtt(stack, target, n));
    }
    if let Some(target) = params.get("connect-to") {
        let n = count("connect-count", 200);
        ok &= runtime::check("connect-rate", || connect_rate(stack, target, n));
    }
    if let Some(target) = params.get("udp-flows-to") {
        let n = count("udp-flows", 5000).min(usize::from(EPHEMERAL_START - FLOW_PORT_BASE) - 2);
        ok &= runtime::check("udp-flows", || udp_flows(stack, target, n));
    }
    ok
}

fn tcp_rtt(stack: &mut Stack, target: &str, n: usize) -> Result<String, String> {
    let (handle, endpoint) = connect(stack, target)?;
    let out = [0x5au8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    let mut samples = Vec::with_capacity(n);
    let result = (|| {
        let mut stream = stack.stream(handle, crate::STEP_TIMEOUT);
        for _ in 0..n {
            let started = Instant::now();
            stream.write_all(&out).map_err(|e| format!("write: {e}"))?;
            stream
                .read_exact(&mut back)
                .map_err(|e| format!("read: {e:?}"))?;
            samples.push(started.elapsed().as_micros());
        }
        Ok::<(), String>(())
    })();
    stack.tcp_close(handle, Duration::from_secs(2));
    result?;
    let (p50, min) = p50_min(samples).ok_or("no samples")?;
    metric("tcp_rtt_p50_us", p50);
    metric("tcp_rtt_min_us", min);
    Ok(format!(
        "{n} round trips to {endpoint}: median {p50} us, min {min} us"
    ))
}

fn udp_rtt(stack: &mut Stack, target: &str, n: usize) -> Result<String, String> {
    let endpoint = parse_endpoint(target).ok_or(format!("bad endpoint {target:?}"))?;
    let socket = stack.udp_bind(0).map_err(|e| format!("bind: {e}"))?;
    let out = [0xa5u8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    let mut samples = Vec::with_capacity(n);
    let result = (|| {
        for _ in 0..n {
            let started = Instant::now();
            stack
                .udp_send(socket, endpoint, &out)
                .map_err(|e| format!("send: {e}"))?;
            let (len, from) = stack
                .udp_recv(socket, &mut back, crate::STEP_TIMEOUT)
                .map_err(|e| format!("receive: {e}"))?;
            if len != MESSAGE || from != endpoint {
                return Err(format!("{len} bytes from {from}"));
            }
            samples.push(started.elapsed().as_micros());
        }
        Ok(())
    })();
    stack.udp_close(socket);
    result?;
    let (p50, min) = p50_min(samples).ok_or("no samples")?;
    metric("udp_rtt_p50_us", p50);
    metric("udp_rtt_min_us", min);
    Ok(format!(
        "{n} datagrams to {endpoint}: median {p50} us, min {min} us"
    ))
}

fn connect_rate(stack: &mut Stack, target: &str, n: usize) -> Result<String, String> {
    let started = Instant::now();
    for i in 0..n {
        let (handle, _) = connect(stack, target).map_err(|e| format!("connection {i}: {e}"))?;
        stack.tcp_close(handle, Duration::from_secs(2));
    }
    let took = started.elapsed().as_micros();
    metric("connects", n as u128);
    metric("connect_total_us", took);
    Ok(format!(
        "{n} connections opened and closed in {took} us ({} per second)",
        n as u128 * 1_000_000 / took.max(1)
    ))
}

/// One datagram from each of `ports`, all sent before any answer is
/// awaited; how many were answered within [`UDP_ANSWER`].
fn udp_batch(
    stack: &mut Stack,
    endpoint: IpEndpoint,
    ports: core::ops::Range<u16>,
) -> Result<usize, String> {
    let mut sockets = Vec::with_capacity(ports.len());
    for port in ports {
        let socket = stack
            .udp_bind(port)
            .map_err(|e| format!("bind {port}: {e}"))?;
        sockets.push((port, socket));
        stack
            .udp_send(socket, endpoint, &port.to_be_bytes())
            .map_err(|e| format!("send from {port}: {e}"))?;
    }
    let deadline = Instant::now().saturating_add(UDP_ANSWER);
    let mut answered = 0;
    for (port, socket) in sockets {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut back = [0u8; 2];
        if matches!(stack.udp_recv(socket, &mut back, left),
            Ok((2, from)) if from == endpoint && back == port.to_be_bytes())
        {
            answered += 1;
        }
        stack.udp_close(socket);
    }
    Ok(answered)
}

fn udp_flows(stack: &mut Stack, target: &str, n: usize) -> Result<String, String> {
    let endpoint = parse_endpoint(target).ok_or(format!("bad endpoint {target:?}"))?;
    // The first exchange also resolves the gateway's MAC: waited for
    // longer, so ARP never counts as a refusal.
    let warm = stack
        .udp_bind(FLOW_PORT_BASE)
        .map_err(|e| format!("bind: {e}"))?;
    let warmed = stack
        .udp_send(warm, endpoint, &FLOW_PORT_BASE.to_be_bytes())
        .map_err(|e| format!("send: {e}"))
        .and_then(|()| {
            let mut back = [0u8; 2];
            stack
                .udp_recv(warm, &mut back, crate::STEP_TIMEOUT)
                .map_err(|e| format!("the first flow: {e}"))
        });
    stack.udp_close(warm);
    warmed?;
    let started = Instant::now();
    let mut answered = 1usize;
    let mut tried = 1usize;
    let end = FLOW_PORT_BASE.saturating_add(u16::try_from(n).unwrap_or(u16::MAX));
    let mut next = FLOW_PORT_BASE + 1;
    while next < end {
        // Paced under a NAT's budget for new flows (zedrouter's: 1000 a
        // second, bursts of 200), so a refusal is the table's.
        let batch_started = Instant::now();
        let batch = next..end.min(next.saturating_add(BATCH));
        let len = batch.len();
        next = batch.end;
        tried += len;
        let got = udp_batch(stack, endpoint, batch)?;
        answered += got;
        if got == 0 {
            break;
        }
        let paced = batch_started.saturating_add(Duration::from_millis(len as u64 * 2));
        while Instant::now() < paced {
            hal::wait_until(Some(paced));
        }
    }
    let took = started.elapsed().as_micros();
    let old = udp_batch(stack, endpoint, FLOW_PORT_BASE..FLOW_PORT_BASE + 1)? == 1;
    let new = udp_batch(stack, endpoint, end..end.saturating_add(1))? == 1;
    metric("udp_flows_tried", tried as u128);
    metric("udp_flows_answered", answered as u128);
    metric("udp_old_flow_answered", u128::from(old));
    metric("udp_new_flow_answered", u128::from(new));
    Ok(format!(
        "{answered} of {tried} flows answered in {took} us; the first flow again: {}; a new one: {}",
        if old { "answered" } else { "refused" },
        if new { "answered" } else { "refused" }
    ))
}
