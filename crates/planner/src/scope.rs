//! Variables bound at a point of a query and how they map to plan columns.

/// What a variable is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarKind {
    /// A node of `label`: columns `v.__ord` and `v.<property>`.
    Node { label: String, primary_key: String },
    /// A relationship of `rel_type`: columns `v.__ord`, `v._src`, `v._dst`, `v.<property>`.
    Rel { rel_type: String },
    /// Any other value: one column named `v`.
    Value,
}

/// Variables in binding order. Hidden variables (anonymous pattern parts) are internal.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    vars: Vec<(String, VarKind, bool)>,
}

impl Scope {
    pub fn get(&self, name: &str) -> Option<&VarKind> {
        self.vars
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, k, _)| k)
    }

    pub fn bind(&mut self, name: &str, kind: VarKind, hidden: bool) {
        debug_assert!(self.get(name).is_none(), "{name} bound twice");
        self.vars.push((name.to_string(), kind, hidden));
    }

    /// Visible variables, in binding order.
    pub fn visible(&self) -> impl Iterator<Item = (&str, &VarKind)> {
        self.vars
            .iter()
            .filter(|(_, _, hidden)| !hidden)
            .map(|(n, k, _)| (n.as_str(), k))
    }

    pub fn all(&self) -> impl Iterator<Item = (&str, &VarKind)> {
        self.vars.iter().map(|(n, k, _)| (n.as_str(), k))
    }
}
