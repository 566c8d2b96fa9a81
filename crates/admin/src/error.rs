use postroom_store::StoreError;

/// Why an admin operation was refused. The CLI prints it; the HTTP API
/// maps it to a status (404, 409, 422, 403, 503).
#[derive(Debug)]
pub enum AdminError {
    /// The domain, mailbox, alias or queue item does not exist (404).
    NotFound(String),
    /// The object exists already (409).
    AlreadyExists(String),
    /// The request breaks a rule: bad syntax, a cycle, a short password
    /// (422).
    Invalid(String),
    /// The object is in a state that does not allow it: mail queued for a
    /// domain, an alias on a mailbox, the directory changing under a
    /// check (409).
    Conflict(String),
    /// The actor may not do this (403).
    Forbidden(String),
    /// A customer's cap (domains, mailboxes, aliases, storage) would be
    /// passed; the message names the cap (409: the request is sound, the
    /// customer's state refuses it, as for `Conflict`).
    CapReached(String),
    /// The store failed (503).
    Storage(StoreError),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::NotFound(s)
            | AdminError::AlreadyExists(s)
            | AdminError::Invalid(s)
            | AdminError::Conflict(s)
            | AdminError::Forbidden(s)
            | AdminError::CapReached(s) => f.write_str(s),
            AdminError::Storage(e) => write!(f, "storage failed: {e}"),
        }
    }
}

impl AdminError {
    /// The HTTP status the API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            AdminError::NotFound(_) => 404,
            AdminError::AlreadyExists(_) | AdminError::Conflict(_) | AdminError::CapReached(_) => 409,
            AdminError::Invalid(_) => 422,
            AdminError::Forbidden(_) => 403,
            AdminError::Storage(_) => 503,
        }
    }
}

impl std::error::Error for AdminError {}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            // The store's own refusals are rules the service checks first;
            // one that still reaches here (a race) is the same refusal.
            StoreError::Invalid(s) if s.contains("exists already") => AdminError::AlreadyExists(s),
            StoreError::Invalid(s) => AdminError::Invalid(s),
            StoreError::Limit(s) => AdminError::Invalid(s.to_string()),
            StoreError::Conflict(s) => AdminError::Conflict(s.to_string()),
            e => AdminError::Storage(e),
        }
    }
}
