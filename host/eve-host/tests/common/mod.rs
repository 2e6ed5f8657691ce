//! What the zedrouter scenarios share: a node bus with the host's `ports`
//! target, zedrouter in QEMU as `eve-host run` starts it, a fake
//! zedagent/zedmanager publishing network instances and apps' interfaces,
//! `nettest` app VMs on their port sockets, and raw apps (this process on
//! a port socket, sending whatever frames a scenario wants).

pub mod frames;
pub mod rawapp;
pub mod rig;
pub mod vm;
