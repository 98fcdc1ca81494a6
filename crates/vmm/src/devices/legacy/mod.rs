//! Legacy PC devices: the 16550 UART, the i8042 controller (reset only) and the
//! reset control register.

pub mod i8042;
pub mod reset_control;
pub mod serial;

pub use i8042::I8042;
pub use reset_control::{RESET_CONTROL_PORT, ResetControl};
pub use serial::{COM1_BASE, SERIAL_IRQ, SerialConsole};
