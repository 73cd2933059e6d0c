//! The broker (DESIGN sections 12 and 13). [`credentials`] answers systemd's
//! `LoadCredential=` requests on the credentials socket.

// `serve --credentials-socket` (branch h-broker) calls `credentials::answer`; until the two
// branches meet nothing here does, hence the allow (remove it at the merge).
#[allow(dead_code)]
pub(crate) mod credentials;
