//! A small HTTP/1.1 server on smoltcp sockets: each slot listens, reads
//! one request (head only, at most 4 KiB), answers it and closes.

use alloc::{format, string::String, vec::Vec};

use net::{NetError, Stack, TcpHandle};
use smoltcp::socket::tcp::State;

/// Longest request head read; longer ones get 431.
const MAX_HEAD: usize = 4096;

enum Phase {
    /// Listening or reading the request.
    Reading(Vec<u8>),
    /// Sending the answer from this offset.
    Answering(Vec<u8>, usize),
    /// Answer sent and our FIN queued: waiting for the close to finish.
    Closing,
}

struct Slot {
    handle: TcpHandle,
    phase: Phase,
}

pub struct Server {
    port: u16,
    slots: Vec<Slot>,
    crash_path: Option<String>,
}

impl Server {
    pub fn new(
        stack: &mut Stack,
        port: u16,
        slots: usize,
        crash_path: Option<&str>,
    ) -> Result<Server, NetError> {
        let mut all = Vec::new();
        for _ in 0..slots {
            all.push(Slot {
                handle: stack.tcp_listen(port)?,
                phase: Phase::Reading(Vec::new()),
            });
        }
        Ok(Server {
            port,
            slots: all,
            crash_path: crash_path.map(String::from),
        })
    }

    /// Moves every connection along; returns whether anything happened.
    pub fn serve(&mut self, stack: &mut Stack) -> bool {
        let mut progress = false;
        for i in 0..self.slots.len() {
            progress |= self.step(stack, i);
        }
        progress
    }

    fn step(&mut self, stack: &mut Stack, i: usize) -> bool {
        let port = self.port;
        let crash_path = self.crash_path.as_deref();
        let slot = &mut self.slots[i];
        let phase = core::mem::replace(&mut slot.phase, Phase::Closing);
        let (next, progress) = stack.with_tcp(slot.handle, |socket| match phase {
            Phase::Reading(mut head) => {
                // A peer that left before finishing its request.
                if matches!(
                    socket.state(),
                    State::Closed | State::TimeWait | State::CloseWait
                ) && !socket.can_recv()
                {
                    socket.abort();
                    let _ = socket.listen(port);
                    return (Phase::Reading(Vec::new()), false);
                }
                let mut buf = [0u8; 512];
                let mut read = false;
                while socket.can_recv() {
                    match socket.recv_slice(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            head.extend_from_slice(&buf[..n]);
                            read = true;
                        }
                    }
                }
                if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > MAX_HEAD {
                    (Phase::Answering(answer(&head, crash_path), 0), true)
                } else {
                    (Phase::Reading(head), read)
                }
            }
            Phase::Answering(answer, mut sent) => {
                let mut wrote = false;
                while sent < answer.len() && socket.can_send() {
                    match socket.send_slice(&answer[sent..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            sent += n;
                            wrote = true;
                        }
                    }
                }
                if sent == answer.len() {
                    socket.close();
                    (Phase::Closing, true)
                } else {
                    (Phase::Answering(answer, sent), wrote)
                }
            }
            Phase::Closing => match socket.state() {
                // The peer has our answer and our FIN (or is gone):
                // listen again at once instead of sitting in TIME-WAIT.
                State::TimeWait | State::Closed | State::CloseWait => {
                    socket.abort();
                    let _ = socket.listen(port);
                    (Phase::Reading(Vec::new()), true)
                }
                _ => (Phase::Closing, false),
            },
        });
        slot.phase = next;
        progress
    }
}

#[cfg(target_arch = "x86_64")]
const ARCH: &str = "x86_64";
#[cfg(target_arch = "aarch64")]
const ARCH: &str = "aarch64";

/// The answer to the request whose head is `head`.
fn answer(head: &[u8], crash_path: Option<&str>) -> Vec<u8> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
    let line = core::str::from_utf8(line).unwrap_or("");
    let mut words = line.split(' ');
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if crash_path.is_some_and(|crash| crash == path) {
        panic!("crash requested with {method} {path}");
    }
    let (status, body) = if head.len() > MAX_HEAD {
        (
            "431 Request Header Fields Too Large",
            String::from("request too large\n"),
        )
    } else if method != "GET" && method != "HEAD" {
        ("405 Method Not Allowed", String::from("GET or HEAD\n"))
    } else if path == "/" {
        ("200 OK", format!("hello from hello-http ({ARCH})\n"))
    } else {
        ("404 Not Found", String::from("not found\n"))
    };
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        answer.extend_from_slice(body.as_bytes());
    }
    answer
}
