//! Variables bound at a point of a query and how they map to plan columns.

/// What a variable is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarKind {
    /// A node with one of `labels`: columns `v.__ord` (global ordinal), `v.__label` and
    /// `v.<property>` over the union of the labels' properties. `primary_key` is the key
    /// column when all labels share its name.
    Node {
        labels: Vec<String>,
        primary_key: Option<String>,
    },
    /// A relationship of one of `types`: columns `v.__ord`, `v.__type`, `v._src`, `v._dst`,
    /// `v.<property>`.
    Rel { types: Vec<String> },
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

    /// Makes a variable internal (an anonymous pattern element named for planning).
    pub fn hide(&mut self, name: &str) {
        for v in self.vars.iter_mut().filter(|(n, _, _)| n == name) {
            v.2 = true;
        }
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
