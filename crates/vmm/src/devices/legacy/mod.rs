//! Legacy PC devices: the 16550 UART and the i8042 controller (reset only).

pub mod i8042;
pub mod serial;

pub use i8042::I8042;
pub use serial::{COM1_BASE, SERIAL_IRQ, SerialConsole};
