//! The protocol's vocabulary: one module per message (or per family of messages sharing a
//! layout), each a small typed view that borrows the frame it was decoded from, and builders for
//! the messages Vigil writes itself.
//!
//! Decoders take bodies from untrusted peers: every field is bounds-checked and counts are
//! checked against what the body can hold before anything is allocated.

pub mod authentication;
pub mod backend_key_data;
pub mod bind;
pub mod command_complete;
pub mod describe;
pub mod error_response;
pub mod execute;
pub mod function_call;
pub mod parameter_status;
pub mod parse;
pub mod query;
pub mod ready_for_query;
pub mod startup;
pub mod tag;

pub use authentication::Authentication;
pub use backend_key_data::BackendKeyData;
pub use bind::Bind;
pub use command_complete::CommandComplete;
pub use describe::{Close, Describe, Target};
pub use error_response::{ErrorFields, Severity};
pub use execute::Execute;
pub use function_call::FunctionCall;
pub use parameter_status::ParameterStatus;
pub use parse::Parse;
pub use query::Query;
pub use ready_for_query::{ReadyForQuery, TransactionStatus};
pub use startup::{StartupPacket, StartupRequest};
