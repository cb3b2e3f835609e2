//! Devices both backends can place on a [`crate::bus::Bus`].
pub mod debug_port;

pub use debug_port::DebugPort;
