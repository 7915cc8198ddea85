//! One module per subcommand.

pub mod reasons;
pub mod watch;
