//! The network test service. It brings the interface up (DHCP unless the
//! command line sets `ip=`) and then runs what the command line asks:
//!
//! - `echo-to=A.B.C.D:PORT`: connect, send `echo-bytes=` bytes (default
//!   256 KiB) of a pattern, close the sending side, read everything back
//!   and compare: the host runs an echo server there.
//! - `echo-on=PORT`: listen, print `nettest: listening on PORT`, accept one
//!   connection and echo it until the peer closes: the host connects.
//!
//! - `send-to=A.B.C.D:PORT` (with `send-bytes=`, default 8 MiB): send to a
//!   host sink and report `@@ metric tcp_send_us` (guest to host).
//! - `receive-from=A.B.C.D:PORT` (with `receive-bytes=`, default 8 MiB):
//!   read that much from a host source (or to its end) and report
//!   `@@ metric tcp_receive_us` and `tcp_receive_bytes` (host to guest).
//!   The length is given because QEMU's guestfwd never forwards the host's
//!   close.
//! - `resolve=NAME` (with `resolve-expect=A.B.C.D`): resolve through the
//!   static `hosts=` entries or the DNS server and compare.
//!
//! - `fetch=URL` (http:// or https://, with `fetch-bytes=N`, default 1 MiB):
//!   GET a body that must be N bytes of the test pattern, streamed.
//! - `post=URL` (with `post-bytes=N`, default 256 KiB): POST N pattern
//!   bytes to an echo endpoint; the answer must be the same bytes.
//! - `root=BASE64`: the root certificate trusted for https:// URLs.
//! - `show=URL[,URL...]`: GET each http:// URL and print its status and
//!   body (`show.rs`).
//! - `udp-send-to=` / `udp-count-on=`: a UDP rate between two apps
//!   (`udprate.rs`).
//!
//! - `rtt-to=`, `udp-rtt-to=`, `connect-to=`, `udp-flows-to=`: the
//!   measurements of `cargo xtask bench network` (`bench.rs`).
//!
//! Each step prints PASS or FAIL with its time; the exit status is 0 only
//! if every step passed.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod bench;
mod http;
mod show;
mod udprate;

use alloc::{format, string::String, vec, vec::Vec};
use core::time::Duration;

use embedded_io::{Read, Write};
use hal::clock::Instant;
use net::{IpEndpoint, Stack};

runtime::entry!("nettest", main);

pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(20);

fn main() -> i32 {
    let params = runtime::cmdline();
    let mut stack = match Stack::from_boot(runtime::boot_info()) {
        Ok(stack) => stack,
        Err(e) => {
            log::error!("FAIL link: {e}");
            return runtime::status(false);
        }
    };
    let mut ok = runtime::check("address", || {
        let started = Instant::now();
        let config = stack
            .wait_for_address(STEP_TIMEOUT)
            .map_err(|e| format!("{e}"))?;
        hal::console::print(format_args!(
            "{}lease {}\n",
            guest_abi::BOOT_TIMER_MARKER,
            Instant::now().as_nanos()
        ));
        let took = started.elapsed().as_micros();
        metric("dhcp_us", took);
        Ok(format!(
            "{} gateway {:?} dns {:?} after {took} us",
            config.address, config.gateway, config.dns
        ))
    });
    if let Some(name) = params.get("resolve") {
        let expected = params.get("resolve-expect");
        ok &= runtime::check("dns", || {
            let started = Instant::now();
            let addr = stack
                .resolve(name, STEP_TIMEOUT)
                .map_err(|e| format!("{name}: {e}"))?;
            let got = format!("{addr}");
            if expected.is_some_and(|want| want != got) {
                return Err(format!("{name} resolved to {got}, expected {expected:?}"));
            }
            Ok(format!(
                "{name} is {got} after {} us",
                started.elapsed().as_micros()
            ))
        });
    }
    if let Some(target) = params.get("echo-to") {
        let bytes = params
            .get("echo-bytes")
            .and_then(|b| b.parse().ok())
            .unwrap_or(256 * 1024);
        ok &= runtime::check("tcp-client", || echo_client(&mut stack, target, bytes));
    }
    if let Some(target) = params.get("send-to") {
        let bytes = params
            .get("send-bytes")
            .and_then(|b| b.parse().ok())
            .unwrap_or(8 << 20);
        ok &= runtime::check("tcp-send", || send_to(&mut stack, target, bytes));
    }
    if let Some(target) = params.get("receive-from") {
        let bytes = params
            .get("receive-bytes")
            .and_then(|b| b.parse().ok())
            .unwrap_or(8 << 20);
        ok &= runtime::check("tcp-receive", || receive_from(&mut stack, target, bytes));
    }
    if let Some(url) = params.get("fetch") {
        let bytes = params
            .get("fetch-bytes")
            .and_then(|b| b.parse().ok())
            .unwrap_or(1 << 20);
        ok &= runtime::check("fetch", || {
            let mut tls = tls_for(url, params.get("root"))?;
            http::fetch(&mut stack, url, bytes, tls.as_mut())
        });
    }
    if let Some(url) = params.get("post") {
        let bytes = params
            .get("post-bytes")
            .and_then(|b| b.parse().ok())
            .unwrap_or(256 * 1024);
        ok &= runtime::check("post", || {
            let mut tls = tls_for(url, params.get("root"))?;
            http::post(&mut stack, url, bytes, tls.as_mut())
        });
    }
    ok &= bench::run(&mut stack);
    let seconds = |key| params.get(key).and_then(|s| s.parse().ok());
    if let Some(port) = params.get("udp-count-on") {
        let window = seconds("udp-count-seconds").unwrap_or(4);
        let settle = params
            .get("udp-count-settle-ms")
            .and_then(|s| s.parse().ok())
            .map_or(Duration::from_secs(1), Duration::from_millis);
        ok &= runtime::check("udp-count", || {
            udprate::count(&mut stack, port, window, settle)
        });
    }
    if let Some(target) = params.get("udp-send-to") {
        let duration = seconds("udp-send-seconds").unwrap_or(8);
        let rate = params.get("udp-send-rate").and_then(|r| r.parse().ok());
        ok &= runtime::check("udp-send", || {
            udprate::send(&mut stack, target, duration, rate)
        });
    }
    if let Some(urls) = params.get("show") {
        ok &= runtime::check("show", || show::show(&mut stack, urls));
    }
    if let Some(port) = params.get("echo-on") {
        ok &= runtime::check("tcp-server", || echo_server(&mut stack, port));
    }
    runtime::status(ok)
}

/// A TLS session for an https:// URL (none for http://).
fn tls_for(url: &str, root: Option<&str>) -> Result<Option<evehttps::TlsSession>, String> {
    let target = evehttp::Target::parse_url(url).map_err(|e| format!("{url}: {e}"))?;
    match target.scheme {
        evehttp::Scheme::Http => Ok(None),
        evehttp::Scheme::Https => {
            let root =
                root.ok_or_else(|| format!("{url}: https needs root= on the command line"))?;
            http::session(root, &target).map(Some)
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn echo_client(stack: &mut Stack, target: &str, len: usize) -> Result<String, String> {
    let endpoint: IpEndpoint = parse_endpoint(target).ok_or(format!("bad endpoint {target:?}"))?;
    let started = Instant::now();
    let handle = stack
        .tcp_connect(endpoint, STEP_TIMEOUT)
        .map_err(|e| format!("connect {endpoint}: {e}"))?;
    let connected = started.elapsed();
    let data = pattern(len);
    let mut back = Vec::with_capacity(len);
    {
        let mut stream = stack.stream(handle, STEP_TIMEOUT);
        let mut sent = 0;
        let mut buf = vec![0u8; 16 * 1024];
        // Interleave writes and reads so neither side's window fills.
        while sent < data.len() || back.len() < data.len() {
            if sent < data.len() {
                sent += stream
                    .write(&data[sent..])
                    .map_err(|e| format!("write: {e}"))?;
                if sent == data.len() {
                    stream.flush().map_err(|e| format!("flush: {e}"))?;
                    stream.shutdown_write();
                }
            }
            if back.len() < sent {
                let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
            }
        }
    }
    stack.tcp_close(handle, Duration::from_secs(2));
    if back != data {
        return Err(format!(
            "echo differs: sent {} bytes, got {}",
            data.len(),
            back.len()
        ));
    }
    let total = started.elapsed();
    Ok(format!(
        "{len} bytes echoed by {endpoint}; connect {} us, total {} us ({} KiB/s each way)",
        connected.as_micros(),
        total.as_micros(),
        (len as u128 * 1_000_000 / total.as_micros().max(1)) / 1024
    ))
}

pub(crate) fn metric(name: &str, value: u128) {
    hal::console::print(format_args!("{}{name} {value}\n", guest_abi::METRIC_MARKER));
}

pub(crate) fn connect(
    stack: &mut Stack,
    target: &str,
) -> Result<(net::TcpHandle, IpEndpoint), String> {
    let endpoint = parse_endpoint(target).ok_or(format!("bad endpoint {target:?}"))?;
    let handle = stack
        .tcp_connect(endpoint, STEP_TIMEOUT)
        .map_err(|e| format!("connect {endpoint}: {e}"))?;
    Ok((handle, endpoint))
}

/// Guest to host: `len` bytes, timed from connect to the last byte acked.
fn send_to(stack: &mut Stack, target: &str, len: usize) -> Result<String, String> {
    let started = Instant::now();
    let (handle, endpoint) = connect(stack, target)?;
    let chunk = pattern(16 * 1024);
    {
        let mut stream = stack.stream(handle, STEP_TIMEOUT);
        let mut sent = 0;
        while sent < len {
            let part = &chunk[..chunk.len().min(len - sent)];
            stream.write_all(part).map_err(|e| format!("write: {e}"))?;
            sent += part.len();
        }
        stream.flush().map_err(|e| format!("flush: {e}"))?;
    }
    let took = started.elapsed();
    stack.tcp_close(handle, Duration::from_secs(2));
    metric("tcp_send_us", took.as_micros());
    metric("tcp_send_bytes", len as u128);
    Ok(format!(
        "{len} bytes to {endpoint} in {} us",
        took.as_micros()
    ))
}

/// Host to guest: `len` bytes (or up to EOF), timed from connect.
fn receive_from(stack: &mut Stack, target: &str, len: usize) -> Result<String, String> {
    let started = Instant::now();
    let (handle, endpoint) = connect(stack, target)?;
    let mut total = 0usize;
    {
        let mut stream = stack.stream(handle, STEP_TIMEOUT);
        let mut buf = vec![0u8; 16 * 1024];
        while total < len {
            let want = buf.len().min(len - total);
            let n = stream
                .read(&mut buf[..want])
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            total += n;
        }
    }
    let took = started.elapsed();
    stack.tcp_close(handle, Duration::from_secs(2));
    metric("tcp_receive_us", took.as_micros());
    metric("tcp_receive_bytes", total as u128);
    Ok(format!(
        "{total} bytes from {endpoint} in {} us",
        took.as_micros()
    ))
}

fn echo_server(stack: &mut Stack, port: &str) -> Result<String, String> {
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let handle = stack.tcp_listen(port).map_err(|e| format!("listen: {e}"))?;
    log::info!("nettest: listening on {port}");
    let peer = stack
        .tcp_accept(handle, Duration::from_secs(60))
        .map_err(|e| format!("accept: {e}"))?;
    let started = Instant::now();
    let mut echoed = 0usize;
    {
        let mut stream = stack.stream(handle, STEP_TIMEOUT);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            stream
                .write_all(&buf[..n])
                .map_err(|e| format!("write: {e}"))?;
            echoed += n;
        }
        stream.flush().map_err(|e| format!("flush: {e}"))?;
    }
    stack.tcp_close(handle, Duration::from_secs(2));
    Ok(format!(
        "echoed {echoed} bytes for {peer} in {} us",
        started.elapsed().as_micros()
    ))
}

pub(crate) fn parse_endpoint(s: &str) -> Option<IpEndpoint> {
    let (addr, port) = s.rsplit_once(':')?;
    let addr: net::Ipv4Address = addr.parse().ok()?;
    Some(IpEndpoint::new(addr.into(), port.parse().ok()?))
}
