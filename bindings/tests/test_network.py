"""Membership and peer-to-peer sync driven from Python: two (or more) engines in this process,
each with its own iroh endpoint.

Every network binds 127.0.0.1 on a random port (`NetworkOptions(loopback=True)`), with no relay
and no discovery: nothing leaves the machine and nothing is multicast. Waits poll with generous
deadlines; no test asserts on timing.
"""

import asyncio
import datetime as dt
import threading
import time
import uuid

import pytest

import crmsync
from crmsync import (
    CrmError,
    FieldOp,
    FieldValue,
    NetworkOptions,
    OpenOptions,
    PeerAddr,
    ReconcileMode,
    Refusal,
    Role,
)

UTC = dt.timezone.utc
DEADLINE = 20.0  # seconds


def run(coro):
    return asyncio.run(coro)


def text(s):
    return FieldValue.TEXT(value=s)


def company(engine, name):
    return engine.create("company", {"name": text(name)})


def name_of(engine, record_id):
    record = engine.get(record_id)
    return None if record is None else record.fields["name"].value


def eventually(what, check):
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.02)


def engine_in(workspace):
    return crmsync.Engine.in_memory_with(OpenOptions(workspace_id=workspace, search=False))


def new_admin():
    admin = crmsync.Engine.in_memory_with(OpenOptions(search=False))
    admin.init_admin()
    return admin


def invited(admin, role=Role.MEMBER, expires_at=None):
    """A new device: it learns the workspace id, shows its node id, the admin invites it and it
    joins with the credential's text (as a QR code would carry it)."""
    device = engine_in(admin.workspace_id())
    credential = admin.invite_device(device.node_id(), role, expires_at)
    assert crmsync.credential_info(credential).workspace_id == device.workspace_id()
    device.join(credential)
    return device


def online(engine):
    network = run(engine.enable_network(NetworkOptions(loopback=True)))
    assert all(a.startswith("127.0.0.1:") for a in network.addr().addrs), network.addr()
    return network


@pytest.fixture
def cleanup():
    """Shuts down networks and closes engines registered during the test, even on failure."""
    items = []
    yield items.append
    for item in reversed(items):
        if isinstance(item, crmsync.Network):
            run(item.shutdown())
        else:
            item.close_database()


# ---------------------------------------------------------------- membership


def test_membership_invite_join_and_credential_info(cleanup):
    admin = new_admin()
    cleanup(admin)
    info = admin.credential()
    assert info.role == Role.ADMIN
    assert info.workspace_id == admin.workspace_id()
    assert info.device == admin.node_id()
    assert info.expires_at is None
    with pytest.raises(CrmError.AlreadyJoined, match="already belongs"):
        admin.init_admin()

    device = engine_in(admin.workspace_id())
    cleanup(device)
    assert device.credential() is None
    node_id = device.node_id()
    assert len(node_id) == 64 and node_id == device.node_id()  # stable
    with pytest.raises(CrmError.NotAdmin):
        device.invite_device(admin.node_id(), Role.MEMBER)

    expires = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(days=30)
    credential = admin.invite_device(node_id, Role.READ_ONLY, expires)
    assert credential.startswith("CRMSYNC1")
    info = crmsync.credential_info(credential)
    assert (info.workspace_id, info.device, info.role) == (
        admin.workspace_id(),
        node_id,
        Role.READ_ONLY,
    )
    assert info.admin == admin.credential().admin
    assert info.expires_at == expires

    # A new database (of its own random workspace) joins and takes the invite's workspace on.
    fresh = crmsync.Engine.in_memory_with(OpenOptions(search=False))
    cleanup(fresh)
    fresh.join(admin.invite_device(fresh.node_id(), Role.MEMBER))
    assert fresh.workspace_id() == admin.workspace_id()

    # A database holding records of another workspace cannot join: the error names both.
    elsewhere = crmsync.Engine.in_memory_with(OpenOptions(search=False))
    cleanup(elsewhere)
    company(elsewhere, "Mine")
    with pytest.raises(CrmError.WrongWorkspace) as wrong:
        elsewhere.join(admin.invite_device(elsewhere.node_id(), Role.MEMBER))
    assert wrong.value.credential_workspace == admin.workspace_id()
    assert wrong.value.store_workspace == elsewhere.workspace_id()
    # The right workspace, but another device.
    other_device = engine_in(admin.workspace_id())
    cleanup(other_device)
    with pytest.raises(CrmError.NotForThisDevice) as not_mine:
        other_device.join(credential)
    assert not_mine.value.issued_to == node_id
    assert not_mine.value.this_device == other_device.node_id()
    for garbage in ["hello", credential[:-4]]:
        with pytest.raises(CrmError.InvalidCredential):
            device.join(garbage)
        with pytest.raises(CrmError.InvalidCredential):
            crmsync.credential_info(garbage)
    with pytest.raises(CrmError.InvalidInput, match="node id"):
        admin.invite_device("not-a-node", Role.MEMBER)

    assert device.join(credential) == info
    assert device.credential() == info
    admin.revoke(node_id)
    with pytest.raises(CrmError.NotAdmin):
        device.revoke(admin.node_id())


def test_a_device_without_a_credential_cannot_go_online(cleanup):
    stranger = crmsync.Engine.in_memory_with(OpenOptions(search=False))
    cleanup(stranger)
    with pytest.raises(CrmError.NotJoined, match="join with a credential"):
        run(stranger.enable_network(NetworkOptions(loopback=True)))


def test_network_options_are_checked(cleanup):
    admin = new_admin()
    cleanup(admin)
    with pytest.raises(CrmError.InvalidInput, match="socket address"):
        run(admin.enable_network(NetworkOptions(bind_addr="localhost")))
    with pytest.raises(CrmError.InvalidInput, match="relay URL"):
        run(admin.enable_network(NetworkOptions(loopback=True, relay_url="not a url")))
    network = run(admin.enable_network(NetworkOptions(bind_addr="127.0.0.1:0")))
    cleanup(network)
    with pytest.raises(CrmError.InvalidInput, match="node id"):
        run(network.sync_with(PeerAddr(node_id="nope", addrs=[])))


# ---------------------------------------------------------------- sync


class StatusCollector:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = []
        self.threads = set()

    def on_status(self, status):
        with self.lock:
            self.statuses.append(status)
            self.threads.add(threading.get_ident())

    def seen(self, check):
        with self.lock:
            return any(check(s) for s in self.statuses)


def test_two_devices_sync_and_converge_and_the_status_listener_fires(cleanup):
    admin = new_admin()
    cleanup(admin)
    member = invited(admin)
    cleanup(member)
    from_admin = company(admin, "Acme")
    from_member = company(member, "Globex")
    shared = company(admin, "Initech")

    na, nb = online(admin), online(member)
    cleanup(na)
    cleanup(nb)
    assert na.node_id() == admin.node_id() and nb.node_id() == member.node_id()
    assert nb.addr().node_id == member.node_id()
    collector = StatusCollector()
    handle = na.register_status_listener(collector)
    assert handle.is_active()

    report = run(na.sync_with(nb.addr()))
    assert (report.records_sent, report.records_received) == (2, 1)
    assert report.skipped == []
    assert not report.changes_held_back
    assert report.peer == member.device_id()
    assert report.mode == ReconcileMode.RANGES
    assert report.bytes_sent > 0 and report.round_trips > 0
    assert name_of(member, from_admin.id) == "Acme"
    assert name_of(admin, from_member.id) == "Globex"
    assert name_of(member, shared.id) == "Initech"

    # Offline edits of different fields on both sides, then a session the other way.
    admin.update(shared.id, [FieldOp.SET(field="industry", value=text("software"))])
    member.update(shared.id, [FieldOp.SET(field="phone", value=text("+1 555 0100"))])
    again = run(nb.sync_with(na.addr()))
    assert again.mode == ReconcileMode.CURSOR
    for engine in (admin, member):
        fields = engine.get(shared.id).fields
        assert fields["industry"] == text("software")
        assert fields["phone"] == text("+1 555 0100")
    assert admin.heads(shared.id) == member.heads(shared.id)

    status = na.status()
    assert not status.background
    (peer,) = status.peers
    assert peer.node_id == member.node_id()
    assert peer.last_sync is not None and peer.last_error is None
    eventually(
        "the status listener hears of the completed session",
        lambda: collector.seen(
            lambda s: any(p.node_id == member.node_id() and p.last_sync for p in s.peers)
        ),
    )
    assert threading.get_ident() not in collector.threads
    handle.unregister()
    assert not handle.is_active()


def test_refusals_arrive_each_with_its_own_reason(cleanup):
    admin = new_admin()
    cleanup(admin)
    na = online(admin)
    cleanup(na)

    # A member of another workspace: one side refuses the other.
    other = new_admin()
    cleanup(other)
    no = online(other)
    cleanup(no)
    with pytest.raises((CrmError.PeerRefused, CrmError.RefusedByPeer)) as refused:
        run(no.sync_with(na.addr()))
    reason = refused.value.reason
    assert isinstance(reason, Refusal.OTHER_WORKSPACE)
    assert {reason.ours, reason.theirs} == {admin.workspace_id(), other.workspace_id()}
    assert "workspace" in refused.value.detail

    # A revoked device.
    revoked = invited(admin)
    cleanup(revoked)
    nr = online(revoked)
    cleanup(nr)
    run(nr.sync_with(na.addr()))
    admin.revoke(revoked.node_id())
    with pytest.raises(CrmError.RefusedByPeer) as refused:
        run(nr.sync_with(na.addr()))
    assert refused.value.reason == Refusal.REVOKED()
    assert refused.value.reason.is_revoked()
    assert "revoked" in refused.value.detail

    # An expired credential (expiry has whole-second precision).
    expires = dt.datetime.now(UTC) + dt.timedelta(seconds=3)
    expiring = invited(admin, Role.MEMBER, expires)
    cleanup(expiring)
    ne = online(expiring)
    cleanup(ne)
    while dt.datetime.now(UTC) <= expires + dt.timedelta(milliseconds=200):
        time.sleep(0.05)
    with pytest.raises(CrmError.RefusedByPeer) as refused:
        run(ne.sync_with(na.addr()))
    assert isinstance(refused.value.reason, Refusal.EXPIRED)
    assert refused.value.reason.expired_at <= dt.datetime.now(UTC)


def test_a_read_only_device_receives_but_its_edits_are_not_accepted(cleanup):
    admin = new_admin()
    cleanup(admin)
    reader = invited(admin, Role.READ_ONLY)
    cleanup(reader)
    assert reader.credential().role == Role.READ_ONLY
    acme = company(admin, "Acme")
    na, nr = online(admin), online(reader)
    cleanup(na)
    cleanup(nr)
    run(nr.sync_with(na.addr()))
    assert name_of(reader, acme.id) == "Acme"

    reader.update(acme.id, [FieldOp.SET(field="name", value=text("Renamed by a reader"))])
    own = company(reader, "Reader's own")
    heads = admin.heads(acme.id)
    # Both directions succeed, and none of the reader's edits reach the admin.
    assert run(nr.sync_with(na.addr())).records_sent == 0
    assert run(na.sync_with(nr.addr())).records_received == 0
    assert name_of(admin, acme.id) == "Acme"
    assert admin.heads(acme.id) == heads
    assert admin.get(own.id) is None

    # No side reports a refusal: the reader never sends its changes, so the admin has nothing
    # to refuse.
    for network in (na, nr):
        (peer,) = network.status().peers
        assert peer.last_sync is not None and peer.last_error is None

    # It keeps receiving.
    admin.update(acme.id, [FieldOp.SET(field="industry", value=text("retail"))])
    run(nr.sync_with(na.addr()))
    assert reader.get(acme.id).fields["industry"] == text("retail")


def test_read_only_refusals_are_errors_of_their_own():
    """Changes a read-only member sends anyway (an outdated or altered app; this library never
    sends them, see above) end the session with `ReadOnlyPeer` on the refusing side, and the
    peer's abort arrives as `RefusedAsReadOnly` on the sending side. Neither can be provoked
    through the bindings: `bindings/tests/sync_errors.rs` provokes the first with the core's
    protocol and checks both conversions. Here: they are their own classes, not generic `Sync`
    errors, and carry their message."""
    for name in ["ReadOnlyPeer", "RefusedAsReadOnly"]:
        cls = getattr(CrmError, name)
        assert issubclass(cls, CrmError) and not issubclass(cls, CrmError.Sync)
        error = cls(detail="refused")
        assert error.detail == "refused"
        with pytest.raises(CrmError) as caught:
            raise error
        assert type(caught.value) is cls


def test_revocations_are_kept_and_travel_with_sessions(cleanup):
    admin = new_admin()
    cleanup(admin)
    member = invited(admin)
    cleanup(member)
    doomed = invited(admin)
    cleanup(doomed)
    assert admin.revocations() == [] and member.revocations() == []

    before = dt.datetime.now(UTC).replace(microsecond=0)
    revocation = admin.revoke(doomed.node_id())
    assert revocation.device == doomed.node_id()
    assert before <= revocation.revoked_at <= dt.datetime.now(UTC)
    assert admin.revocations() == [revocation]
    assert member.revocations() == []  # not told yet

    # A session with the admin hands the member the revocation...
    na, nm, nd = online(admin), online(member), online(doomed)
    for network in (na, nm, nd):
        cleanup(network)
    run(nm.sync_with(na.addr()))
    assert member.revocations() == [revocation]
    # ...and from then on the member refuses the revoked device too, either way round.
    with pytest.raises(CrmError.RefusedByPeer) as refused:
        run(nd.sync_with(nm.addr()))
    assert refused.value.reason == Refusal.REVOKED()
    with pytest.raises(CrmError.PeerRefused) as refused:
        run(nm.sync_with(nd.addr()))
    assert refused.value.reason == Refusal.REVOKED()
    assert "revoked" in refused.value.detail


def test_background_mode_delivers_a_new_record(cleanup):
    admin = new_admin()
    cleanup(admin)
    member = invited(admin)
    cleanup(member)
    na = run(admin.enable_network(NetworkOptions(loopback=True, poll_interval_ms=60_000)))
    nb = online(member)
    cleanup(na)
    cleanup(nb)
    collector = StatusCollector()
    handle = na.register_status_listener(collector)

    na.add_peer(nb.addr())
    assert [p.node_id for p in na.status().peers] == [member.node_id()]
    na.start_background()
    na.start_background()  # twice is fine
    assert na.status().background
    pushed = company(admin, "Pushed Ltd")
    eventually("background mode delivers the new record", lambda: name_of(member, pushed.id))
    eventually(
        "the status shows the peer up to date",
        lambda: collector.seen(
            lambda s: s.background
            and any(p.last_sync and p.pending_changes == 0 for p in s.peers)
        ),
    )
    na.stop_background()
    assert not na.status().background
    handle.unregister()


def test_shutdown_and_closing_the_engine_stop_the_network(cleanup):
    admin = new_admin()
    cleanup(admin)
    member = invited(admin)
    cleanup(member)
    na, nb = online(admin), online(member)
    cleanup(nb)
    handle = na.register_status_listener(StatusCollector())
    run(na.shutdown())
    run(na.shutdown())  # twice is fine
    assert na.is_shut_down() and not handle.is_active()
    with pytest.raises(CrmError.NetworkClosed, match="enable it again"):
        run(na.sync_with(nb.addr()))
    with pytest.raises(CrmError.NetworkClosed):
        na.status()
    # Enabled again, and closing the engine shuts it down.
    na = online(admin)
    run(nb.sync_with(na.addr()))
    admin.close_database()
    assert na.is_shut_down()
    with pytest.raises(CrmError.Closed):
        run(admin.enable_network(NetworkOptions(loopback=True)))


def test_a_new_device_reads_the_workspace_from_the_credential(tmp_path, cleanup):
    """The device knows the workspace from the admin (e.g. a first QR code), opens its database
    file in it, and reopens it later with the same node id and membership."""
    admin = new_admin()
    cleanup(admin)
    path = str(tmp_path / "phone.redb")
    phone = crmsync.Engine.open_with(path, OpenOptions(workspace_id=admin.workspace_id()))
    node_id = phone.node_id()
    credential = admin.invite_device(node_id, Role.MEMBER)
    workspace = crmsync.credential_info(credential).workspace_id
    assert workspace == phone.workspace_id()
    phone.join(credential)
    phone.close_database()

    phone = crmsync.Engine.open(path)
    cleanup(phone)
    assert phone.node_id() == node_id
    assert phone.credential().role == Role.MEMBER
    assert str(uuid.UUID(phone.workspace_id())) == workspace
