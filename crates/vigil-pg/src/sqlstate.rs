//! The SQLSTATE codes Vigil answers with, named. Clients branch on these, so each refusal uses
//! the class PostgreSQL itself would use for the same situation.

/// The password (token) was wrong, expired, revoked or otherwise not accepted.
pub const INVALID_PASSWORD: &str = "28P01";
/// Authorization failed for another reason (identity not allowed on this connection, TLS
/// required).
pub const INVALID_AUTHORIZATION: &str = "28000";
/// No connection with the requested name.
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// Malformed or unexpected protocol message.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// Vigil could not log in to (or reach) the upstream server.
pub const SQLSERVER_REJECTED_CONNECTION: &str = "08004";
pub const CONNECTION_FAILURE: &str = "08006";
/// The audit trail cannot take a record: the statement was not run.
pub const SYSTEM_ERROR: &str = "58000";
/// Feature not supported (replication connections, GSS encryption…).
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// Too many prepared statements or portals for one session.
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
pub const INVALID_CURSOR_NAME: &str = "34000";
/// Authentication did not finish in time.
pub const CONNECTION_EXCEPTION: &str = "08000";
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// The session's grants do not allow it.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// The identity or the connection already has as many sessions open as allowed.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// The transaction is aborted: the server refuses every statement but its end.
pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
/// Vigil could not read the catalog again, so it cannot check the statement (the state the
/// session is in does not allow the statement: PostgreSQL's class for that).
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
/// A name (of a prepared statement or portal) Vigil cannot read for certain.
pub const INVALID_NAME: &str = "42602";
