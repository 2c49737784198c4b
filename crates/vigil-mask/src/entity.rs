//! What a masked value is: the built-in entity kinds and labels of rules and custom detectors.

use std::fmt;

/// The kind of a masked value. Built-ins have fixed names; `Named(i)` is the `i`-th label a
/// configuration introduced (a custom detector's name or a rule's `entity`), resolved with
/// [`Masker::entity_name`](crate::Masker::entity_name).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    Ssn,
    Phone,
    Email,
    Date,
    Zip,
    Address,
    Mrn,
    HealthPlan,
    Account,
    Mbi,
    Npi,
    Dea,
    CreditCard,
    Ip,
    Url,
    Vin,
    DeviceSerial,
    PersonName,
    Age,
    /// A rule without an `entity`: the column as a whole.
    Column,
    Named(u16),
}

impl Entity {
    /// Every built-in entity (not `Column` or `Named`).
    pub const BUILTIN: [Entity; 19] = [
        Entity::Ssn,
        Entity::Phone,
        Entity::Email,
        Entity::Date,
        Entity::Zip,
        Entity::Address,
        Entity::Mrn,
        Entity::HealthPlan,
        Entity::Account,
        Entity::Mbi,
        Entity::Npi,
        Entity::Dea,
        Entity::CreditCard,
        Entity::Ip,
        Entity::Url,
        Entity::Vin,
        Entity::DeviceSerial,
        Entity::PersonName,
        Entity::Age,
    ];

    /// The built-in name; `None` for `Named` (ask the masker).
    pub fn builtin_name(self) -> Option<&'static str> {
        Some(match self {
            Entity::Ssn => "ssn",
            Entity::Phone => "phone",
            Entity::Email => "email",
            Entity::Date => "date",
            Entity::Zip => "zip",
            Entity::Address => "address",
            Entity::Mrn => "mrn",
            Entity::HealthPlan => "health_plan",
            Entity::Account => "account",
            Entity::Mbi => "mbi",
            Entity::Npi => "npi",
            Entity::Dea => "dea",
            Entity::CreditCard => "credit_card",
            Entity::Ip => "ip",
            Entity::Url => "url",
            Entity::Vin => "vin",
            Entity::DeviceSerial => "device_serial",
            Entity::PersonName => "person_name",
            Entity::Age => "age",
            Entity::Column => "column",
            Entity::Named(_) => return None,
        })
    }

    pub fn parse_builtin(s: &str) -> Option<Entity> {
        if s == "column" {
            return Some(Entity::Column);
        }
        Entity::BUILTIN
            .into_iter()
            .find(|e| e.builtin_name() == Some(s))
    }

    /// Dense index (built-ins, then `Column`, then labels) for per-entity tables.
    pub(crate) fn index(self) -> usize {
        match self {
            Entity::Column => Entity::BUILTIN.len(),
            Entity::Named(i) => Entity::BUILTIN.len() + 1 + i as usize,
            e => Entity::BUILTIN
                .iter()
                .position(|b| *b == e)
                .unwrap_or(Entity::BUILTIN.len()),
        }
    }
}

impl fmt::Debug for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.builtin_name() {
            Some(n) => f.write_str(n),
            None => match self {
                Entity::Named(i) => write!(f, "named#{i}"),
                _ => unreachable!(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_indexes_are_dense() {
        for (i, e) in Entity::BUILTIN.into_iter().enumerate() {
            assert_eq!(Entity::parse_builtin(e.builtin_name().unwrap()), Some(e));
            assert_eq!(e.index(), i);
        }
        assert_eq!(Entity::Column.index(), 19);
        assert_eq!(Entity::Named(2).index(), 22);
    }
}
