//! A TCP relay on loopback between a node and its controller that the
//! test can close: while closed, the connections under way are cut and new
//! ones are accepted and dropped at once, so the node honestly cannot reach
//! its controller (every attempt fails as it would against a controller
//! that went away), and opening it lets the next attempt through.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// The connections relayed now, by number: both ends, to cut on close.
type Relayed = Mutex<HashMap<u64, (TcpStream, TcpStream)>>;

pub struct Gate {
    port: u16,
    closed: Arc<AtomicBool>,
    relayed: Arc<Relayed>,
}

impl Gate {
    /// Relays `127.0.0.1:PORT` (the answer's [`Gate::port`]) to
    /// `127.0.0.1:target`, open.
    pub fn start(target: u16) -> io::Result<Gate> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let closed = Arc::new(AtomicBool::new(false));
        let relayed: Arc<Relayed> = Arc::default();
        let (shut, conns) = (closed.clone(), relayed.clone());
        // The thread lives as long as the test process: the listener is
        // only ever blocked in `accept`.
        thread::spawn(move || {
            let next = AtomicU64::new(0);
            for node in listener.incoming().map_while(Result::ok) {
                if shut.load(Ordering::SeqCst) {
                    drop(node);
                    continue;
                }
                let Ok(controller) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let id = next.fetch_add(1, Ordering::SeqCst);
                let relaying = relay(id, node, controller, &conns).is_ok();
                // A close between the check above and the registration
                // missed this one.
                if !relaying || shut.load(Ordering::SeqCst) {
                    cut(conns.lock().unwrap().remove(&id));
                }
            }
        });
        Ok(Gate {
            port,
            closed,
            relayed,
        })
    }

    /// The port the node is given as its controller's.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Stops the controller answering: connections under way are cut.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for (_, ends) in self.relayed.lock().unwrap().drain() {
            cut(Some(ends));
        }
    }

    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }
}

fn cut(ends: Option<(TcpStream, TcpStream)>) {
    if let Some((node, controller)) = ends {
        let _ = node.shutdown(Shutdown::Both);
        let _ = controller.shutdown(Shutdown::Both);
    }
}

/// Copies both ways between `node` and `controller` on two threads,
/// registered as `id` until either side ends.
fn relay(id: u64, node: TcpStream, controller: TcpStream, conns: &Arc<Relayed>) -> io::Result<()> {
    conns
        .lock()
        .unwrap()
        .insert(id, (node.try_clone()?, controller.try_clone()?));
    let pipe = |mut from: TcpStream, mut to: TcpStream, conns: Arc<Relayed>| {
        thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            conns.lock().unwrap().remove(&id);
        });
    };
    pipe(node.try_clone()?, controller.try_clone()?, conns.clone());
    pipe(controller, node, conns.clone());
    Ok(())
}
