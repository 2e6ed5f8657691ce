//! zedrouter's NICs: the uplink (the node's user-mode network), the trunk
//! to the host's port switch, where every app port's frames arrive under
//! the port's 802.1ad service tag, and the device ports (switch
//! instances' outside ends, `deviceports.rs`). Frames move between them
//! and the engine here, and nothing else is done with them.

use alloc::vec::Vec;

use appnet::uplink_dhcp::{LeaseEvent, UplinkDhcp, Wanted, wanted};
use appnet::{Engine, PortId};

use crate::deviceports;
use net::VirtioNetDevice;
use smoltcp::phy::{Device, RxToken, TxToken};
use virtio_drivers::transport::DeviceType;

/// The engine's number for the uplink: 0 is never a tag.
pub const UPLINK: PortId = PortId(0);

/// The service tag's EtherType (TPID).
const TPID: [u8; 2] = [0x88, 0xa8];
/// The longest Ethernet frame (1500 bytes of payload), header included.
const MAX_FRAME: usize = 1514;
/// The longest frame on the trunk: the longest Ethernet frame and the tag.
pub const MAX_TRUNK_FRAME: usize = MAX_FRAME + 4;
/// Frames taken from one NIC before the other's turn, so neither starves
/// the other or the bus.
const BUDGET: usize = 64;

/// Why the NICs could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicError {
    /// Fewer than two virtio-net devices.
    Missing,
    /// Neither NIC has the trunk's MAC (`guest_abi::TRUNK_MAC`).
    NoTrunk,
    /// A device did not initialise.
    Device,
}

impl core::fmt::Display for NicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NicError::Missing => "zedrouter needs two NICs: the uplink and the trunk",
            NicError::NoTrunk => "no NIC has the trunk's MAC address",
            NicError::Device => "a virtio-net device did not initialise",
        })
    }
}

/// What the NICs counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicCounters {
    /// Trunk frames without a valid tag, or too short to hold one.
    pub untagged: u64,
    /// Frames the engine gave for a port no NIC has, or too long to send.
    pub unsendable: u64,
    /// Frames the device had no room for.
    pub tx_full: u64,
}

/// The uplink, the trunk and the device ports.
pub struct Nics {
    uplink: VirtioNetDevice,
    trunk: VirtioNetDevice,
    /// Device ports by index, in index order.
    devices: Vec<(usize, VirtioNetDevice)>,
    pub counters: NicCounters,
}

/// The tag and the untagged frame of a trunk frame.
pub fn untag(frame: &[u8], out: &mut Vec<u8>) -> Option<u16> {
    if frame.len() < 18 || frame[12..14] != TPID {
        return None;
    }
    let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
    if vid == 0 || vid == 0x0fff {
        return None;
    }
    out.clear();
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&frame[16..]);
    Some(vid)
}

/// Writes `frame` with the tag `vid` pushed into `out`, which is
/// `frame.len() + 4` bytes.
pub fn tag_into(frame: &[u8], vid: u16, out: &mut [u8]) {
    out[..12].copy_from_slice(&frame[..12]);
    out[12..14].copy_from_slice(&TPID);
    out[14..16].copy_from_slice(&vid.to_be_bytes());
    out[16..].copy_from_slice(&frame[12..]);
}

impl Nics {
    /// Takes the machine's virtio-net devices; the one with
    /// `guest_abi::TRUNK_MAC` is the trunk, those with a device port's MAC
    /// are device ports, and the first other one is the uplink.
    pub fn take() -> Result<Nics, NicError> {
        let mut devices = Vec::new();
        while let Some(transport) = hal::virtio::take(DeviceType::Network) {
            devices.push(VirtioNetDevice::new(transport).map_err(|_| NicError::Device)?);
        }
        if devices.len() < 2 {
            return Err(NicError::Missing);
        }
        let trunk = devices
            .iter()
            .position(|d| d.mac() == guest_abi::TRUNK_MAC)
            .ok_or(NicError::NoTrunk)?;
        let trunk = devices.remove(trunk);
        let mut ports = Vec::new();
        let mut others = Vec::new();
        for device in devices {
            match guest_abi::device_port_index(device.mac()) {
                Some(index) => ports.push((index, device)),
                None => others.push(device),
            }
        }
        ports.sort_by_key(|(index, _)| *index);
        ports.dedup_by_key(|(index, _)| *index);
        if others.is_empty() {
            return Err(NicError::Missing);
        }
        let uplink = others.remove(0);
        Ok(Nics {
            uplink,
            trunk,
            devices: ports,
            counters: NicCounters::default(),
        })
    }

    /// The indexes of the device ports that have a NIC.
    pub fn device_ports(&self) -> Vec<usize> {
        self.devices.iter().map(|(index, _)| *index).collect()
    }

    pub fn uplink_mac(&self) -> [u8; 6] {
        self.uplink.mac()
    }

    /// Feeds the engine what both NICs received (a budget each), and the
    /// uplink's DHCP client, when there is one, the uplink frames that are
    /// its; sends what they have to send. Returns whether any frame moved,
    /// and the client's change of lease.
    pub fn pump(
        &mut self,
        engine: &mut Engine,
        mut dhcp: Option<&mut UplinkDhcp>,
        now: appnet::Instant,
    ) -> (bool, Option<LeaseEvent>) {
        let mut moved = false;
        let mut inner = Vec::with_capacity(MAX_TRUNK_FRAME);
        for _ in 0..BUDGET {
            let Some((rx, _)) = self.trunk.receive(smoltcp::time::Instant::ZERO) else {
                break;
            };
            moved = true;
            let counters = &mut self.counters;
            rx.consume(|frame| match untag(frame, &mut inner) {
                Some(vid) => engine.receive(now, PortId(vid), &inner),
                None => counters.untagged += 1,
            });
        }
        for _ in 0..BUDGET {
            let Some((rx, _)) = self.uplink.receive(smoltcp::time::Instant::ZERO) else {
                break;
            };
            moved = true;
            let client = dhcp.as_deref_mut();
            rx.consume(|frame| match (client, wanted(frame)) {
                (Some(client), Wanted::Only) => client.receive(frame),
                (Some(client), Wanted::Copy) => {
                    client.receive(frame);
                    engine.receive(now, UPLINK, frame);
                }
                _ => engine.receive(now, UPLINK, frame),
            });
        }
        for (index, device) in &mut self.devices {
            let port = deviceports::port_id(*index);
            for _ in 0..BUDGET {
                let Some((rx, _)) = device.receive(smoltcp::time::Instant::ZERO) else {
                    break;
                };
                moved = true;
                rx.consume(|frame| engine.receive(now, port, frame));
            }
        }
        let lease = dhcp.as_deref_mut().and_then(|client| client.poll(now));
        if let Some(client) = dhcp {
            while let Some(frame) = client.pop_transmit() {
                moved = true;
                self.send(UPLINK, &frame);
            }
        }
        if engine.poll_at(now).is_some_and(|at| at <= now) {
            engine.poll(now);
        }
        while let Some(out) = engine.pop_transmit() {
            moved = true;
            self.send(out.port, &out.frame);
        }
        (moved, lease)
    }

    fn send(&mut self, port: PortId, frame: &[u8]) {
        // Device ports and the uplink carry frames as they are, the trunk
        // tagged.
        let untagged = if port == UPLINK {
            Some(&mut self.uplink)
        } else if let Some(index) = deviceports::index_of(port) {
            match self.devices.iter_mut().find(|(i, _)| *i == index) {
                Some((_, device)) => Some(device),
                None => {
                    self.counters.unsendable += 1;
                    return;
                }
            }
        } else {
            None
        };
        let tagged = untagged.is_none();
        let (device, len, max) = match untagged {
            Some(device) => (device, frame.len(), MAX_FRAME),
            None => (&mut self.trunk, frame.len() + 4, MAX_TRUNK_FRAME),
        };
        if frame.len() < 14 || len > max || (tagged && port.0 > 4094) {
            self.counters.unsendable += 1;
            return;
        }
        let Some(tx) = device.transmit(smoltcp::time::Instant::ZERO) else {
            self.counters.tx_full += 1;
            return;
        };
        tx.consume(len, |buf| {
            if tagged {
                tag_into(frame, port.0, buf);
            } else {
                buf.copy_from_slice(frame);
            }
        });
    }
}
