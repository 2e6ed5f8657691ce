//! What the app scenarios ask of an app's loopback port map. Included with
//! `#[path]`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One `GET path` on loopback `port`: the body of a 200, `None` for any
/// other answer or none (an app that is not up yet is not an error).
pub fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: app\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.") && head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// A loopback port nothing listens on now: an app's host port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
