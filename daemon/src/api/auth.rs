//! Who is calling: the peer's credentials from the Unix socket (SO_PEERCRED), checked against
//! `[api]` in gantry.toml. Root and the daemon's own user are always allowed.

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

/// The peer of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(cred) => Peer {
                uid: Some(cred.uid()),
                gid: Some(cred.gid()),
            },
            Err(_) => Peer {
                uid: None,
                gid: None,
            },
        }
    }
}

pub use crate::config::daemon::Access;

impl Access {
    pub fn allows(&self, peer: Peer) -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        match peer.uid {
            Some(0) => true,
            Some(uid) if uid == me => true,
            Some(uid) if self.allow_uids.contains(&uid) => true,
            Some(_) => peer.gid.is_some_and(|g| self.allow_gids.contains(&g)),
            None => false,
        }
    }
}
