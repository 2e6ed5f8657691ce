//! hello-http: the example app unikernel. It takes an address by DHCP,
//! serves HTTP on `port=` (default 80) and powers off with status 0 when
//! the VM's power button is pressed, which is how the host stops an app
//! gracefully.
//!
//! - `GET /` answers `hello from hello-http (<arch>)`.
//! - `crash-path=/PATH`: a request for PATH panics (to show the host
//!   reports a crashing app with its reason).
//! - `power-button=ignore`: never powers down (to show the host powers off
//!   an app that does not stop).
//!
//! Everything runs on the runtime's poll loop: the stack's poller serves
//! connections, a timer reads the power button.
#![no_std]
#![no_main]

extern crate alloc;

mod http;
mod power_button;

use alloc::{format, rc::Rc, string::String};
use core::{cell::RefCell, time::Duration};

use net::Stack;
use runtime::poll::PollLoop;

use crate::http::Server;

runtime::entry!("hello-http", main);

/// How often the power button is read: a stop waits at most this long.
const POWER_BUTTON_POLL: Duration = Duration::from_millis(50);
/// Connections served at once.
const SLOTS: usize = 4;

/// State the poll loop's callbacks share.
type Shared<T> = Rc<RefCell<T>>;

/// Brings the interface up and listens. Kept out of `main`'s frame: a
/// debug build copies the stack (tens of KiB) at every move, and the
/// boot stack is 128 KiB with no guard page below it.
#[inline(never)]
fn start_serving(
    port: u16,
    crash_path: Option<&str>,
) -> Result<(Shared<Stack>, Shared<Server>), String> {
    let stack = Rc::new(RefCell::new(
        Stack::from_boot(runtime::boot_info()).map_err(|e| format!("no network: {e}"))?,
    ));
    let config = stack
        .borrow_mut()
        .wait_for_address(Duration::from_secs(30))
        .map_err(|e| format!("no address: {e}"))?;
    log::info!("hello-http: address {}", config.address);
    let server = Server::new(&mut stack.borrow_mut(), port, SLOTS, crash_path)
        .map_err(|e| format!("cannot listen on {port}: {e}"))?;
    log::info!("hello-http: listening on port {port}");
    Ok((stack, Rc::new(RefCell::new(server))))
}

fn main() -> i32 {
    let params = runtime::cmdline();
    let port = match params.get("port").map(str::parse::<u16>) {
        None => 80,
        Some(Ok(port)) => port,
        Some(Err(_)) => {
            log::error!("hello-http: bad port= on the command line");
            return runtime::status(false);
        }
    };
    let (stack, server) = match start_serving(port, params.get("crash-path")) {
        Ok(serving) => serving,
        Err(why) => {
            log::error!("hello-http: {why}");
            return runtime::status(false);
        }
    };
    let mut poll = PollLoop::new();
    poll.poller(move |ctl| {
        let mut stack = stack.borrow_mut();
        let mut progress = stack.poll();
        progress |= server.borrow_mut().serve(&mut stack);
        if let Some(at) = stack.poll_at() {
            ctl.wake_by(at);
        }
        progress
    });
    if params.get("power-button") == Some("ignore") {
        log::info!("hello-http: ignoring the power button");
    } else {
        power_button::arm();
        poll.every(POWER_BUTTON_POLL, |ctl| {
            if power_button::pressed() {
                log::info!("hello-http: power button pressed, powering off");
                ctl.stop(runtime::status(true));
            }
        });
    }
    poll.run()
}
