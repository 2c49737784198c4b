//! Which PostgreSQL protocol path carried a statement: the adapter's own detail, which the
//! audit records carry as a neutral [`ProtocolPath`] under the names they have always had.

use vigil_core::event::ProtocolPath;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatementProtocol {
    /// A simple Query message (may hold several statements).
    Simple,
    /// Parse/Bind/Execute.
    Extended,
    /// A FunctionCall message.
    FunctionCall,
}

impl StatementProtocol {
    /// The name the audit trail records (`"protocol":"simple"`…): an export field, never renamed.
    pub(crate) const fn path(self) -> ProtocolPath {
        ProtocolPath::from_static(match self {
            StatementProtocol::Simple => "simple",
            StatementProtocol::Extended => "extended",
            StatementProtocol::FunctionCall => "function_call",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_the_names_records_were_written_with() {
        assert_eq!(StatementProtocol::Simple.path().as_str(), "simple");
        assert_eq!(StatementProtocol::Extended.path().as_str(), "extended");
        assert_eq!(
            StatementProtocol::FunctionCall.path().as_str(),
            "function_call"
        );
    }
}
