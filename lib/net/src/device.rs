//! virtio-net as a smoltcp `phy::Device`.
//!
//! virtio-drivers' transmit waits for the device to take each frame, so the
//! TX queue never holds more than one; `transmit` still hands out a token
//! only when the queue has room, which is the back-pressure smoltcp needs.
//! No checksum offload is negotiated, so smoltcp computes and checks every
//! checksum itself (the default capabilities).

use alloc::rc::Rc;
use core::cell::RefCell;

use hal::virtio::VirtioHal;
use smoltcp::{
    phy::{self, DeviceCapabilities, Medium},
    time::Instant,
};
use virtio_drivers::{
    device::net::{RxBuffer, VirtIONet},
    transport::SomeTransport,
};

/// Receive and transmit descriptors. User-mode networking sends bursts of
/// dozens of frames; a short receive ring drops them and TCP falls back to
/// retransmission timeouts.
const QUEUE_SIZE: usize = 128;
/// Ethernet frame plus virtio-net header, rounded up.
const BUFFER_LEN: usize = 2048;
/// Largest Ethernet frame we send or take, header included.
const MAX_FRAME: usize = 1514;

type Net = VirtIONet<VirtioHal, SomeTransport<'static>, QUEUE_SIZE>;

/// A virtio-net device.
pub struct VirtioNetDevice {
    net: Rc<RefCell<Net>>,
    mac: [u8; 6],
}

impl VirtioNetDevice {
    /// Initialises the device behind `transport`.
    pub fn new(transport: SomeTransport<'static>) -> Result<Self, virtio_drivers::Error> {
        let net = Net::new(transport, BUFFER_LEN)?;
        let mac = net.mac_address();
        Ok(VirtioNetDevice {
            net: Rc::new(RefCell::new(net)),
            mac,
        })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
}

/// A received frame; its buffer goes back to the device when consumed.
pub struct RxToken {
    net: Rc<RefCell<Net>>,
    buffer: RxBuffer,
}

/// Room to send one frame.
pub struct TxToken {
    net: Rc<RefCell<Net>>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(self.buffer.packet());
        if let Err(e) = self.net.borrow_mut().recycle_rx_buffer(self.buffer) {
            log::error!("virtio-net: receive buffer lost: {e:?}");
        }
        result
    }
}

impl phy::TxToken for TxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut net = self.net.borrow_mut();
        let mut frame = net.new_tx_buffer(len);
        let result = f(frame.packet_mut());
        if let Err(e) = net.send(frame) {
            log::warn!("virtio-net: frame of {len} bytes dropped: {e:?}");
        }
        result
    }
}

impl phy::Device for VirtioNetDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken)> {
        let buffer = self.net.borrow_mut().receive().ok()?;
        Some((
            RxToken {
                net: self.net.clone(),
                buffer,
            },
            TxToken {
                net: self.net.clone(),
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken> {
        self.net.borrow().can_send().then(|| TxToken {
            net: self.net.clone(),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        // smoltcp caps every TCP window it advertises at this many
        // segments. One (smoltcp's default for small rings) held every
        // receive to one segment per round trip: 1462 bytes of window,
        // measured as 0.2-0.4 MiB/s from the host to an app behind
        // zedrouter. The receive ring takes QUEUE_SIZE frames, more than a
        // whole TCP buffer's worth.
        caps.max_burst_size = Some(QUEUE_SIZE);
        caps
    }
}
