//! Which app gets which address on a local instance. As EVE's zedrouter
//! does, an interface gets its address when it is attached (its static
//! address, the one it had, or the next free one in the DHCP range), so
//! DHCP, DNS names, the metadata server and anti-spoofing all know it
//! before the app asks. A detached interface's address is held for the
//! lease time, so an app that comes back gets it again.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;

use crate::config::{ConfigError, LocalConfig, is_host_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub mac: EthernetAddress,
    /// `None` while the interface is attached.
    pub held_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct Addresses {
    by_ip: BTreeMap<Ipv4Addr, Reservation>,
    by_mac: BTreeMap<EthernetAddress, Ipv4Addr>,
}

impl Addresses {
    fn free(&mut self, ip: Ipv4Addr) {
        if let Some(old) = self.by_ip.remove(&ip) {
            self.by_mac.remove(&old.mac);
        }
    }

    fn take(&mut self, ip: Ipv4Addr, mac: EthernetAddress) -> Ipv4Addr {
        if let Some(old) = self.by_mac.get(&mac).copied()
            && old != ip
        {
            self.free(old);
        }
        self.free(ip);
        self.by_ip.insert(
            ip,
            Reservation {
                mac,
                held_until: None,
            },
        );
        self.by_mac.insert(mac, ip);
        ip
    }

    fn taken_by_other(&self, ip: Ipv4Addr, mac: EthernetAddress, now: Instant) -> bool {
        self.by_ip
            .get(&ip)
            .is_some_and(|r| r.mac != mac && r.held_until.is_none_or(|until| until > now))
    }

    /// The address for an interface being attached.
    pub fn assign(
        &mut self,
        local: &LocalConfig,
        mac: EthernetAddress,
        static_ip: Option<Ipv4Addr>,
        now: Instant,
    ) -> Result<Ipv4Addr, ConfigError> {
        if let Some(ip) = static_ip {
            let attached_elsewhere = self
                .by_ip
                .get(&ip)
                .is_some_and(|r| r.mac != mac && r.held_until.is_none());
            if !is_host_of(local.subnet, ip) || ip == local.gateway || attached_elsewhere {
                return Err(ConfigError::BadStaticIp);
            }
            return Ok(self.take(ip, mac));
        }
        if let Some(ip) = self.by_mac.get(&mac).copied()
            && local.dhcp_range.contains(ip)
            && is_host_of(local.subnet, ip)
        {
            return Ok(self.take(ip, mac));
        }
        let first = u32::from(local.dhcp_range.first);
        let last = u32::from(local.dhcp_range.last);
        let free = (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| *ip != local.gateway && !self.taken_by_other(*ip, mac, now))
            .ok_or(ConfigError::AddressesExhausted)?;
        Ok(self.take(free, mac))
    }

    /// Holds a detached interface's address until `until`.
    pub fn hold(&mut self, mac: EthernetAddress, until: Instant) {
        if let Some(ip) = self.by_mac.get(&mac)
            && let Some(r) = self.by_ip.get_mut(ip)
        {
            r.held_until = Some(until);
        }
    }

    /// Forgets holds that ran out.
    pub fn sweep(&mut self, now: Instant) {
        let expired: Vec<Ipv4Addr> = self
            .by_ip
            .iter()
            .filter(|(_, r)| r.held_until.is_some_and(|until| until <= now))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in expired {
            self.free(ip);
        }
    }

    pub fn reservations(&self) -> impl Iterator<Item = (Ipv4Addr, Reservation)> + '_ {
        self.by_ip.iter().map(|(ip, r)| (*ip, *r))
    }

    /// Restores a saved reservation unless its address or MAC is taken.
    pub fn restore(&mut self, local: &LocalConfig, ip: Ipv4Addr, reservation: Reservation) {
        if is_host_of(local.subnet, ip)
            && ip != local.gateway
            && !self.by_ip.contains_key(&ip)
            && !self.by_mac.contains_key(&reservation.mac)
        {
            self.by_ip.insert(ip, reservation);
            self.by_mac.insert(reservation.mac, ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AddressRange;
    use alloc::vec;
    use smoltcp::time::Duration;
    use smoltcp::wire::Ipv4Cidr;

    fn local() -> LocalConfig {
        LocalConfig {
            subnet: Ipv4Cidr::new(Ipv4Addr::new(10, 1, 0, 0), 24),
            gateway: Ipv4Addr::new(10, 1, 0, 1),
            dhcp_range: AddressRange {
                first: Ipv4Addr::new(10, 1, 0, 1),
                last: Ipv4Addr::new(10, 1, 0, 3),
            },
            dns_servers: vec![],
            ntp_servers: vec![],
            domain: Default::default(),
            static_routes: vec![],
            static_hosts: vec![],
        }
    }

    fn mac(n: u8) -> EthernetAddress {
        EthernetAddress([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn assigns_from_the_range_skipping_the_gateway_and_holds_on_detach() {
        let cfg = local();
        let mut a = Addresses::default();
        let t = Instant::from_secs(0);
        assert_eq!(
            a.assign(&cfg, mac(1), None, t),
            Ok(Ipv4Addr::new(10, 1, 0, 2))
        );
        assert_eq!(
            a.assign(&cfg, mac(2), None, t),
            Ok(Ipv4Addr::new(10, 1, 0, 3))
        );
        assert_eq!(
            a.assign(&cfg, mac(3), None, t),
            Err(ConfigError::AddressesExhausted)
        );
        a.hold(mac(1), t + Duration::from_secs(60));
        assert_eq!(
            a.assign(&cfg, mac(3), None, t),
            Err(ConfigError::AddressesExhausted)
        );
        // The same app comes back: same address.
        assert_eq!(
            a.assign(&cfg, mac(1), None, t),
            Ok(Ipv4Addr::new(10, 1, 0, 2))
        );
        a.hold(mac(1), t + Duration::from_secs(60));
        let later = t + Duration::from_secs(61);
        a.sweep(later);
        assert_eq!(
            a.assign(&cfg, mac(3), None, later),
            Ok(Ipv4Addr::new(10, 1, 0, 2))
        );
    }

    #[test]
    fn static_addresses_must_be_hosts_of_the_subnet_and_free() {
        let cfg = local();
        let mut a = Addresses::default();
        let t = Instant::from_secs(0);
        let fixed = Ipv4Addr::new(10, 1, 0, 200);
        assert_eq!(a.assign(&cfg, mac(1), Some(fixed), t), Ok(fixed));
        assert_eq!(
            a.assign(&cfg, mac(2), Some(fixed), t),
            Err(ConfigError::BadStaticIp)
        );
        for bad in [[10, 1, 0, 1], [10, 1, 0, 0], [10, 1, 0, 255], [10, 2, 0, 5]] {
            assert_eq!(
                a.assign(&cfg, mac(3), Some(Ipv4Addr::from(bad)), t),
                Err(ConfigError::BadStaticIp)
            );
        }
    }
}
