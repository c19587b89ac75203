//! The errors of the sync protocol and the membership check as the bindings report them.
//!
//! A read-only device running this library never sends changes (its sessions succeed and its
//! edits stay local; `test_network.py` drives that over loopback from Python). The refusal of
//! changes it sends anyway (an outdated or altered app) cannot be provoked through the
//! bindings, so it is provoked here with the core's sync protocol over an in-memory stream,
//! and the real error goes through the bindings' conversion.

use chrono::{TimeZone, Utc};
use crmsync::net::{NetError, Refusal as CoreRefusal};
use crmsync::sync::{AbortCode, SyncError, SyncOptions, sync};
use crmsync::{Engine, EngineOptions, NewRecord, RecordType};
use crmsync_ffi::{CrmError, Refusal};
use tokio::io::{duplex, split};
use uuid::Uuid;

fn replica(workspace: Uuid) -> Engine {
    let mut options = EngineOptions::default();
    options.store.workspace = Some(workspace);
    Engine::in_memory_with(options).expect("in-memory engine")
}

#[tokio::test]
async fn changes_from_a_read_only_peer_arrive_as_read_only_peer() {
    let workspace = Uuid::new_v4();
    let (admin, reader) = (replica(workspace), replica(workspace));
    let sent_anyway = reader
        .create(NewRecord::new(RecordType::Company).with("name", "Sent anyway"))
        .unwrap()
        .id;
    // The admin's side of a session with a read-only member (what the network sets from the
    // roles both credentials carry); the reader's side ignores its role and sends.
    let strict = SyncOptions {
        accept_changes: false,
        ..SyncOptions::default()
    };
    let lenient = SyncOptions::default();
    let (x, y) = duplex(64 * 1024);
    let ((xr, xw), (yr, yw)) = (split(x), split(y));
    let (refusing, pushing) = tokio::join!(
        sync(&admin, xr, xw, &strict),
        sync(&reader, yr, yw, &lenient)
    );

    let error = CrmError::from(NetError::Sync(refusing.expect_err("the admin refuses")));
    let CrmError::ReadOnlyPeer { detail } = &error else {
        panic!("expected ReadOnlyPeer, got {error:?}");
    };
    assert!(detail.contains("read-only member"), "{detail}");
    assert!(detail.contains("none of them were applied"), "{detail}");
    assert_eq!(error.to_string(), *detail);
    assert!(admin.get(sent_anyway).unwrap().is_none());

    // The pushing side may finish before the abort reaches it, see the abort, or find the
    // stream closed under it; the abort, when it arrives, is reported as such.
    if let Err(e @ SyncError::Remote { .. }) = pushing {
        let error = CrmError::from(NetError::Sync(e));
        assert!(
            matches!(error, CrmError::RefusedAsReadOnly { .. }),
            "{error:?}"
        );
    }
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
