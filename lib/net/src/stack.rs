//! The interface and its sockets.

use core::time::Duration;

use alloc::{string::String, vec, vec::Vec};
use bootinfo::cmdline::Cmdline;
use hal::clock::Instant;
use smoltcp::{
    iface::{Config, Interface, PollResult, SocketHandle, SocketSet},
    socket::{dhcpv4, tcp, udp},
    time::Instant as NetInstant,
    wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint, IpListenEndpoint, Ipv4Address},
};
use virtio_drivers::transport::DeviceType;

use crate::{Addressing, AddressingError, Ipv4Config, TcpStream, VirtioNetDevice};

/// TCP buffer size each way: a window's worth at user-mode network speeds.
const TCP_BUFFER: usize = 64 * 1024;
const UDP_PACKETS: usize = 8;
const UDP_BUFFER: usize = 8 * 1024;
const EPHEMERAL_PORTS: core::ops::Range<u16> = 49152..65535;

/// Why a network operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// No virtio-net device on this machine.
    NoDevice,
    /// The virtio-net device would not initialise.
    Device,
    /// No entropy to seed the stack (TCP sequence numbers, ports).
    NoEntropy,
    Addressing(AddressingError),
    /// The interface has no IPv4 address yet.
    NoAddress,
    /// The operation did not complete in time.
    Timeout,
    /// The peer refused or reset the connection.
    Refused,
    /// The connection is closed for this direction.
    Closed,
    /// The endpoint or port is not usable (in use, zero, unroutable).
    Unaddressable,
    /// The datagram does not fit the socket's buffer.
    TooLarge,
    /// No DNS server is known (none from DHCP, no `dns=`).
    NoDnsServer,
    /// The DNS answer was an error or unusable.
    Resolve(dnswire::DnsError),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::NoDevice => f.write_str("no virtio-net device"),
            NetError::Device => f.write_str("virtio-net device failed to initialise"),
            NetError::NoEntropy => f.write_str("no entropy source to seed the network stack"),
            NetError::Addressing(e) => write!(f, "addressing: {e}"),
            NetError::NoAddress => f.write_str("no IPv4 address"),
            NetError::Timeout => f.write_str("timed out"),
            NetError::Refused => f.write_str("connection refused or reset"),
            NetError::Closed => f.write_str("connection closed"),
            NetError::Unaddressable => f.write_str("address or port unusable"),
            NetError::TooLarge => f.write_str("datagram too large"),
            NetError::NoDnsServer => f.write_str("no DNS server configured"),
            NetError::Resolve(e) => write!(f, "DNS: {e}"),
        }
    }
}

impl core::error::Error for NetError {}

impl embedded_io::Error for NetError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            NetError::Timeout => ErrorKind::TimedOut,
            NetError::Refused => ErrorKind::ConnectionRefused,
            NetError::Closed => ErrorKind::BrokenPipe,
            NetError::Unaddressable => ErrorKind::AddrNotAvailable,
            _ => ErrorKind::Other,
        }
    }
}

/// A TCP socket of a [`Stack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHandle(pub(crate) SocketHandle);

/// A UDP socket of a [`Stack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHandle(SocketHandle);

/// One interface, its sockets, and how it gets its address.
pub struct Stack {
    iface: Interface,
    device: VirtioNetDevice,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    config: Option<Ipv4Config>,
    next_port: u16,
    dns_override: Option<(Ipv4Address, u16)>,
    hosts: Vec<(String, Ipv4Address)>,
}

pub(crate) fn now() -> NetInstant {
    NetInstant::from_micros((Instant::now().as_nanos() / 1000) as i64)
}

fn random_u64() -> Result<u64, NetError> {
    let mut seed = [0u8; 8];
    hal::entropy::fill(&mut seed, false).map_err(|_| NetError::NoEntropy)?;
    Ok(u64::from_le_bytes(seed))
}

impl Stack {
    /// Brings up the first virtio-net device with the command line's
    /// addressing (DHCP by default).
    pub fn from_boot(info: &hal::BootInfo) -> Result<Stack, NetError> {
        hal::virtio::discover(info);
        hal::entropy::ensure_source().map_err(|_| NetError::NoEntropy)?;
        let params = Cmdline::new(info.cmdline);
        let addressing = Addressing::from_cmdline(&params).map_err(NetError::Addressing)?;
        let dns = crate::addressing::dns_server(&params).map_err(NetError::Addressing)?;
        let hosts = crate::addressing::static_hosts(&params).map_err(NetError::Addressing)?;
        let transport = hal::virtio::take(DeviceType::Network).ok_or(NetError::NoDevice)?;
        let device = VirtioNetDevice::new(transport).map_err(|_| NetError::Device)?;
        let mut stack = Stack::new(device, addressing)?;
        stack.dns_override = dns;
        for (name, addr) in hosts {
            stack.add_host(&name, addr);
        }
        Ok(stack)
    }

    /// Adds (or replaces) a static name, as EVE's `hosts` file does.
    pub fn add_host(&mut self, name: &str, addr: Ipv4Address) {
        let name = name.to_ascii_lowercase();
        self.hosts.retain(|(n, _)| *n != name);
        self.hosts.push((name, addr));
    }

    /// Resolves `name` to an IPv4 address: a literal, a static name, or an A
    /// query to the DNS server (retried, each try up to a third of
    /// `timeout`).
    pub fn resolve(&mut self, name: &str, timeout: Duration) -> Result<Ipv4Address, NetError> {
        if let Ok(addr) = name.parse() {
            return Ok(addr);
        }
        let wanted = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if let Some((_, addr)) = self.hosts.iter().find(|(n, _)| *n == wanted) {
            return Ok(*addr);
        }
        let server = self
            .dns_override
            .or_else(|| Some((self.config?.dns?, 53)))
            .ok_or(NetError::NoDnsServer)?;
        let server = IpEndpoint::new(server.0.into(), server.1);
        let id = (random_u64()? & 0xffff) as u16;
        let mut query = [0u8; 512];
        let len = dnswire::encode_query(id, &wanted, &mut query).map_err(NetError::Resolve)?;
        let socket = self.udp_bind(0)?;
        let result = (|| {
            for _ in 0..3 {
                self.udp_send(socket, server, &query[..len])?;
                let deadline = Instant::now().saturating_add(timeout / 3);
                let mut reply = [0u8; 1500];
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let (n, from) = match self.udp_recv(socket, &mut reply, left) {
                        Ok(got) => got,
                        Err(NetError::Timeout) => break,
                        Err(e) => return Err(e),
                    };
                    if from != server {
                        continue;
                    }
                    match dnswire::parse_response(&reply[..n], id) {
                        Err(dnswire::DnsError::NotOurResponse) => continue,
                        Err(e) => return Err(NetError::Resolve(e)),
                        Ok(answer) => {
                            return answer
                                .addresses
                                .first()
                                .copied()
                                .ok_or(NetError::Resolve(dnswire::DnsError::NameNotFound));
                        }
                    }
                }
            }
            Err(NetError::Timeout)
        })();
        self.udp_close(socket);
        result
    }

    pub fn new(mut device: VirtioNetDevice, addressing: Addressing) -> Result<Stack, NetError> {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(device.mac())));
        config.random_seed = random_u64()?;
        let iface = Interface::new(config, &mut device, now());
        let span = u64::from(EPHEMERAL_PORTS.end - EPHEMERAL_PORTS.start);
        let next_port = EPHEMERAL_PORTS.start + (random_u64()? % span) as u16;
        let mut stack = Stack {
            iface,
            device,
            sockets: SocketSet::new(vec![]),
            dhcp: None,
            config: None,
            next_port,
            dns_override: None,
            hosts: Vec::new(),
        };
        match addressing {
            Addressing::Dhcp => {
                stack.dhcp = Some(stack.sockets.add(dhcpv4::Socket::new()));
            }
            Addressing::Static(config) => stack.apply(Some(config)),
        }
        Ok(stack)
    }

    /// The MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.device.mac()
    }

    /// The current IPv4 settings, once there are any.
    pub fn config(&self) -> Option<Ipv4Config> {
        self.config
    }

    fn apply(&mut self, config: Option<Ipv4Config>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(c) = config {
                // Capacity is at least one address.
                let _ = addrs.push(IpCidr::Ipv4(c.address));
            }
        });
        let routes = self.iface.routes_mut();
        routes.remove_default_ipv4_route();
        if let Some(gateway) = config.and_then(|c| c.gateway) {
            // Fails only when the route table is full, which one route cannot make it.
            let _ = routes.add_default_ipv4_route(gateway);
        }
        self.config = config;
    }

    /// Moves packets and timers along; returns whether any socket changed.
    /// Poll-driven services call this from a `runtime::poll` poller, and
    /// ask the loop to turn again by [`Stack::poll_at`].
    pub fn poll(&mut self) -> bool {
        let changed = self.iface.poll(now(), &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged;
        if let Some(handle) = self.dhcp {
            match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
                Some(dhcpv4::Event::Configured(lease)) => {
                    let config = Ipv4Config {
                        address: lease.address,
                        gateway: lease.router,
                        dns: lease.dns_servers.first().copied(),
                    };
                    log::info!(
                        "dhcp: {} gateway {:?} dns {:?}",
                        config.address,
                        config.gateway,
                        config.dns
                    );
                    self.apply(Some(config));
                }
                Some(dhcpv4::Event::Deconfigured) if self.config.is_some() => {
                    log::warn!("dhcp: lease lost");
                    self.apply(None);
                }
                Some(dhcpv4::Event::Deconfigured) | None => {}
            }
        }
        changed
    }

    /// When the interface next has work that no packet brings (a
    /// retransmission, an ARP or DHCP retry, a delayed send): `None` when
    /// only an arriving packet can give it any. Now or earlier when it has
    /// work already.
    pub fn poll_at(&mut self) -> Option<Instant> {
        let delay = self.iface.poll_delay(now(), &self.sockets)?;
        Some(Instant::now().saturating_add(Duration::from_micros(delay.total_micros())))
    }

    /// Polls until `ready` gives a value or `timeout` passes, sleeping in
    /// between until a packet arrives or the interface has timed work.
    pub(crate) fn wait<T>(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut(&mut Stack) -> Result<Option<T>, NetError>,
    ) -> Result<T, NetError> {
        let deadline = Instant::now().saturating_add(timeout);
        loop {
            self.poll();
            if let Some(value) = ready(self)? {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(NetError::Timeout);
            }
            let wake = self.poll_at().map_or(deadline, |at| at.min(deadline));
            hal::wait_until(Some(wake));
        }
    }

    /// Waits for an address (a DHCP lease, or the static one at once).
    pub fn wait_for_address(&mut self, timeout: Duration) -> Result<Ipv4Config, NetError> {
        self.wait(timeout, |stack| Ok(stack.config))
    }

    /// A TCP socket with Nagle and delayed ACKs off: our traffic is
    /// request/response and bulk transfers over fast virtual links, where
    /// both only add stalls (measured: 40 ms per exchange against Linux's
    /// own delayed ACK).
    fn tcp_socket() -> tcp::Socket<'static> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        );
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        socket
    }

    fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = if EPHEMERAL_PORTS.contains(&(port + 1)) {
            port + 1
        } else {
            EPHEMERAL_PORTS.start
        };
        port
    }

    /// Access to a TCP socket, for non-blocking use from a poll loop.
    pub fn with_tcp<R>(
        &mut self,
        handle: TcpHandle,
        f: impl FnOnce(&mut tcp::Socket<'static>) -> R,
    ) -> R {
        f(self.sockets.get_mut::<tcp::Socket>(handle.0))
    }

    /// Opens a connection and waits until it is established.
    pub fn tcp_connect(
        &mut self,
        remote: IpEndpoint,
        timeout: Duration,
    ) -> Result<TcpHandle, NetError> {
        if self.config.is_none() {
            return Err(NetError::NoAddress);
        }
        let local = self.ephemeral_port();
        let handle = TcpHandle(self.sockets.add(Self::tcp_socket()));
        let connected = self
            .sockets
            .get_mut::<tcp::Socket>(handle.0)
            .connect(self.iface.context(), remote, local)
            .map_err(|_| NetError::Unaddressable)
            .and_then(|()| self.wait(timeout, |stack| stack.established(handle)));
        match connected {
            Ok(()) => Ok(handle),
            Err(e) => {
                self.sockets.remove(handle.0);
                Err(e)
            }
        }
    }

    fn established(&mut self, handle: TcpHandle) -> Result<Option<()>, NetError> {
        match self.sockets.get::<tcp::Socket>(handle.0).state() {
            tcp::State::Established => Ok(Some(())),
            tcp::State::Closed | tcp::State::TimeWait | tcp::State::CloseWait => {
                Err(NetError::Refused)
            }
            _ => Ok(None),
        }
    }

    /// Starts listening on `port`.
    pub fn tcp_listen(&mut self, port: u16) -> Result<TcpHandle, NetError> {
        let mut socket = Self::tcp_socket();
        socket
            .listen(IpListenEndpoint { addr: None, port })
            .map_err(|_| NetError::Unaddressable)?;
        Ok(TcpHandle(self.sockets.add(socket)))
    }

    /// Waits for a listening socket to take a connection; returns the peer.
    pub fn tcp_accept(
        &mut self,
        handle: TcpHandle,
        timeout: Duration,
    ) -> Result<IpEndpoint, NetError> {
        self.wait(timeout, |stack| {
            let socket = stack.sockets.get::<tcp::Socket>(handle.0);
            Ok(match socket.state() {
                tcp::State::Established => socket.remote_endpoint(),
                _ => None,
            })
        })
    }

    /// A blocking stream over an established connection; every call gives
    /// up after `timeout`.
    pub fn stream(&mut self, handle: TcpHandle, timeout: Duration) -> TcpStream<'_> {
        TcpStream::new(self, handle, timeout)
    }

    /// Closes our side and frees the socket once the peer has acknowledged
    /// everything we sent, FIN included, as a socket `close` does: we do not
    /// wait for the peer's own FIN (some peers, QEMU's guestfwd among them,
    /// never send one). If that takes longer than `timeout`, the connection
    /// is reset.
    ///
    /// A simultaneous close (both FINs cross) counts as done once the
    /// peer's FIN is in and all our data acknowledged: the peer then
    /// acknowledges our FIN on a copy of its own FIN, a segment RFC 9293
    /// (and so smoltcp) drops whole as a duplicate, so smoltcp would sit in
    /// CLOSING until its FIN's retransmission a second later. Through a
    /// router's extra hop every short connection to QEMU's user-mode
    /// networking closes this way (measured: 0.9 s per connection).
    pub fn tcp_close(&mut self, handle: TcpHandle, timeout: Duration) {
        self.sockets.get_mut::<tcp::Socket>(handle.0).close();
        let closed = self.wait(timeout, |stack| {
            let socket = stack.sockets.get::<tcp::Socket>(handle.0);
            let done = match socket.state() {
                tcp::State::FinWait2 | tcp::State::TimeWait | tcp::State::Closed => true,
                tcp::State::Closing => socket.send_queue() == 0,
                _ => false,
            };
            Ok(done.then_some(()))
        });
        if closed.is_err() {
            let socket = self.sockets.get_mut::<tcp::Socket>(handle.0);
            log::warn!(
                "tcp: close with {:?} unfinished after {timeout:?} in state {}; resetting",
                socket.remote_endpoint(),
                socket.state()
            );
            socket.abort();
            self.poll();
        }
        self.sockets.remove(handle.0);
    }

    pub(crate) fn tcp(&mut self, handle: TcpHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle.0)
    }

    /// Binds a UDP socket (port 0: an ephemeral one).
    pub fn udp_bind(&mut self, port: u16) -> Result<UdpHandle, NetError> {
        let port = if port == 0 {
            self.ephemeral_port()
        } else {
            port
        };
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_BUFFER],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        socket.bind(port).map_err(|_| NetError::Unaddressable)?;
        Ok(UdpHandle(self.sockets.add(socket)))
    }

    /// Queues one datagram and pushes it out.
    pub fn udp_send(
        &mut self,
        handle: UdpHandle,
        to: IpEndpoint,
        data: &[u8],
    ) -> Result<(), NetError> {
        self.sockets
            .get_mut::<udp::Socket>(handle.0)
            .send_slice(data, to)
            .map_err(|e| match e {
                udp::SendError::BufferFull => NetError::TooLarge,
                udp::SendError::Unaddressable => NetError::Unaddressable,
            })?;
        self.poll();
        Ok(())
    }

    /// Waits for one datagram; returns its length and sender.
    pub fn udp_recv(
        &mut self,
        handle: UdpHandle,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(usize, IpEndpoint), NetError> {
        self.wait(timeout, |stack| {
            match stack
                .sockets
                .get_mut::<udp::Socket>(handle.0)
                .recv_slice(buf)
            {
                Ok((n, meta)) => Ok(Some((n, meta.endpoint))),
                Err(udp::RecvError::Exhausted) => Ok(None),
                Err(udp::RecvError::Truncated) => Err(NetError::TooLarge),
            }
        })
    }

    /// Frees a UDP socket.
    pub fn udp_close(&mut self, handle: UdpHandle) {
        self.sockets.remove(handle.0);
    }
}
