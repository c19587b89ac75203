//! The errors of the sync protocol and the membership check as the bindings report them.
//!
//! A read-only device running this library never sends changes (its sessions succeed and its
//! edits stay local; `test_network.py` drives that over loopback from Python). The refusal of
//! changes it sends anyway (an outdated or altered app that ignores the peer's hello saying it
//! takes none) is provoked in the core's tests (`tests/sync.rs`); here the error it produces
//! goes through the bindings' conversion.

use chrono::{TimeZone, Utc};
use crmsync::net::{NetError, Refusal as CoreRefusal};
use crmsync::sync::{AbortCode, SyncError};
use crmsync_ffi::{CrmError, Refusal};
use uuid::Uuid;

#[test]
fn changes_from_a_read_only_peer_arrive_as_read_only_peer() {
    let error = CrmError::from(NetError::Sync(SyncError::ReadOnlyPeer));
    let CrmError::ReadOnlyPeer { detail } = &error else {
        panic!("expected ReadOnlyPeer, got {error:?}");
    };
    assert!(detail.contains("read-only member"), "{detail}");
    assert!(detail.contains("none of them were applied"), "{detail}");
    assert_eq!(error.to_string(), *detail);
}

#[test]
fn the_peers_read_only_abort_arrives_as_refused_as_read_only() {
    let abort = SyncError::Remote {
        code: AbortCode::ReadOnly,
        message: "the peer is a read-only member; its changes are refused".to_string(),
    };
    let error = CrmError::from(NetError::Sync(abort));
    let CrmError::RefusedAsReadOnly { detail } = &error else {
        panic!("expected RefusedAsReadOnly, got {error:?}");
    };
    assert!(
        detail.contains("this device is a read-only member"),
        "{detail}"
    );

    // Other aborts stay generic sync errors, with the peer's message.
    let other = SyncError::Remote {
        code: AbortCode::Protocol,
        message: "unexpected frame".to_string(),
    };
    let error = CrmError::from(NetError::Sync(other));
    let CrmError::Sync { detail } = &error else {
        panic!("expected Sync, got {error:?}");
    };
    assert!(detail.contains("unexpected frame"), "{detail}");
}

#[test]
fn every_refusal_reason_keeps_its_own_variant() {
    let workspace = Uuid::new_v4();
    let expired_at = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
    let cases = [
        (
            CoreRefusal::UnknownWorkspace { workspace },
            Refusal::UnknownWorkspace {
                workspace: workspace.to_string(),
            },
        ),
        (CoreRefusal::Revoked, Refusal::Revoked),
        (
            CoreRefusal::Busy { max_sessions: 64 },
            Refusal::Busy { max_sessions: 64 },
        ),
        (
            CoreRefusal::RateLimited {
                bytes_per_minute: 1 << 20,
                retry_after_secs: 42,
            },
            Refusal::RateLimited {
                bytes_per_minute: 1 << 20,
                retry_after_secs: 42,
            },
        ),
        (
            CoreRefusal::Expired { expired_at },
            Refusal::Expired {
                expired_at: expired_at.into(),
            },
        ),
    ];
    for (core, expected) in cases {
        let message = format!("the peer refused this device: {core}");
        let error = CrmError::from(NetError::RefusedByPeer(core));
        assert_eq!(
            error,
            CrmError::RefusedByPeer {
                reason: expected,
                detail: message
            }
        );
    }
}
