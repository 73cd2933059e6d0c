//! The broker: `mxm-secrets serve` runs as its own user, alone able to
//! read the config and the stores' keys, and answers clients over a unix socket, so the
//! policy becomes a boundary a caller cannot talk its way around. [`server`] listens and
//! serves (sockets from the command line or from systemd, [`activation`]), [`peer`] asks the
//! kernel who is calling, [`protocol`] is the wire format, [`client`] the other side, for
//! `run`/`get`/`check`/`list --broker`; [`credentials`] answers systemd's `LoadCredential=`;
//! [`told`] is what a client learns when it is refused.
//! The pipeline is the one of [`crate::SecretsApi`]; nothing here judges or fetches itself.

pub(crate) mod activation;
pub(crate) mod client;
pub(crate) mod credentials;
pub(crate) mod peer;
pub(crate) mod protocol;
pub(crate) mod server;
pub(crate) mod told;

pub(crate) use server::{Limits, ServeOptions, serve};
