//! Wires the masking engine (`vigil-mask`) to the gateway's masking traits (`vigil-pg`): the
//! key is resolved and the configuration compiled here, at startup, so that a rule that
//! cannot work stops Vigil with a clear error instead of letting values through.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::Arc;
use vigil_core::Principal;
use vigil_identity::IdentityConfig;
use vigil_mask::{ColumnMasker, Masker, MaskingConfig, Outcome, SessionMasker};
use vigil_pg::masking::{
    ColumnMask, ColumnSource, EvidenceKey, MaskLabel, MaskOutcome, Masking, ResultColumn,
    SessionMasking, ValueMasker,
};

/// Compiles `[masking]` (resolving `hmac_key`).
pub fn compile(config: &MaskingConfig) -> Result<Masker> {
    let key = match &config.hmac_key {
        Some(r) => Some(
            r.resolve()
                .with_context(|| format!("masking.hmac_key ({r})"))?
                .expose()
                .trim()
                .as_bytes()
                .to_vec(),
        ),
        None => None,
    };
    vigil_mask::compile(config, key.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The engine as the gateway sees it.
pub struct EngineMasking {
    masker: Masker,
    /// Groups of each configured identity (rules and exemptions may name groups).
    groups: HashMap<String, Vec<String>>,
}

impl EngineMasking {
    pub fn new(masker: Masker, identities: &[IdentityConfig]) -> Self {
        EngineMasking {
            masker,
            groups: identities
                .iter()
                .map(|i| (i.name.clone(), i.groups.clone()))
                .collect(),
        }
    }
}

impl Masking for EngineMasking {
    fn session(&self, principal: &Principal, connection: &str) -> Option<Arc<dyn SessionMasking>> {
        let groups = self
            .groups
            .get(&principal.name)
            .map_or(&[][..], Vec::as_slice);
        let session = self.masker.session(&principal.name, groups, connection)?;
        Some(Arc::new(Session(session)))
    }
}

struct Session(SessionMasker);

fn outcome(o: Outcome) -> MaskOutcome {
    match o {
        Outcome::Unchanged => MaskOutcome::Unchanged,
        Outcome::Replaced(k) => MaskOutcome::Replaced(k),
        Outcome::Null(k) => MaskOutcome::Null(k),
    }
}

impl SessionMasking for Session {
    fn column(&self, column: &ResultColumn<'_>) -> Option<ColumnMask> {
        let source = column.source.map(|s| (s.schema, s.table, s.column));
        let masker = self.0.column(source, column.name)?;
        Some(ColumnMask {
            rule: masker.is_rule(),
            masker: Arc::new(Column(masker)),
        })
    }

    fn scrub(&self, text: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
        outcome(self.0.scrub(text, out))
    }

    fn scrub_counting(
        &self,
        text: &[u8],
        out: &mut Vec<u8>,
        also: &mut Vec<EvidenceKey>,
    ) -> MaskOutcome {
        outcome(self.0.scrub_counting(text, out, also))
    }

    fn label(&self, key: EvidenceKey) -> MaskLabel {
        let l = self.0.label(key);
        MaskLabel {
            rule: l.rule,
            entity: l.entity,
            operator: l.operator,
        }
    }

    fn has_rule(&self, source: ColumnSource<'_>) -> bool {
        self.0.has_rule(source.schema, source.table, source.column)
    }

    fn has_rules(&self) -> bool {
        self.0.has_rules()
    }

    fn may_mask_column(&self, column: &str) -> bool {
        self.0.may_mask_column(column)
    }
}

struct Column(ColumnMasker);

impl ValueMasker for Column {
    fn mask(&self, value: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
        outcome(self.0.mask(value, out))
    }

    fn mask_counting(
        &self,
        value: &[u8],
        out: &mut Vec<u8>,
        also: &mut Vec<EvidenceKey>,
    ) -> MaskOutcome {
        outcome(self.0.mask_counting(value, out, also))
    }

    fn unreadable(&self) -> MaskOutcome {
        outcome(self.0.unreadable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::identity::{AuthMethod, IdentityKind};

    fn principal(name: &str) -> Principal {
        Principal {
            name: name.into(),
            kind: IdentityKind::Machine,
            auth_method: AuthMethod::ServiceToken,
            issuer: None,
            subject: None,
            credential_id: None,
        }
    }

    #[test]
    fn groups_come_from_the_identities() {
        let config: MaskingConfig = toml::from_str(
            "exempt_groups = [\"clinicians\"]\n[[rules]]\ncolumns = [\"*.ssn\"]\noperator = \"null\"",
        )
        .unwrap();
        let mut portal = IdentityConfig::machine("portal");
        portal.groups = vec!["clinicians".into()];
        let m = EngineMasking::new(compile(&config).unwrap(), &[portal]);
        assert!(m.session(&principal("portal"), "ehr").is_none());
        let s = m.session(&principal("job"), "ehr").unwrap();
        assert!(s.has_rule(ColumnSource {
            schema: "public",
            table: "patients",
            column: "ssn"
        }));
        assert!(s.has_rules() && s.may_mask_column("ssn") && !s.may_mask_column("id"));
    }

    #[test]
    fn a_missing_key_is_a_clear_startup_error() {
        let config: MaskingConfig = toml::from_str(
            "hmac_key = \"env:VIGIL_TEST_NO_SUCH_KEY\"\n[[rules]]\ncolumns = [\"*.ssn\"]\noperator = \"hmac\"",
        )
        .unwrap();
        let e = format!("{:#}", compile(&config).unwrap_err());
        assert!(
            e.contains("masking.hmac_key") && e.contains("VIGIL_TEST_NO_SUCH_KEY"),
            "{e}"
        );
    }
}
