//! Devices both backends can place on a [`crate::bus::Bus`].
pub mod cmos;
pub mod debug_port;
pub mod i8042;
pub mod plic;
pub mod serial;
pub mod stubs;

pub use cmos::Cmos;
pub use debug_port::DebugPort;
pub use i8042::I8042;
pub use serial::Serial;
pub use stubs::FixedPort;
