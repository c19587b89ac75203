"""The generated Kotlin and Swift files export the whole API.

No Kotlin or Swift compiler runs here, so these checks read the generated sources: every object,
method, type and error the app uses must be declared, with the right shape (async methods as
`suspend fun` / `async throws`, fallible calls throwing). A method dropped from the Rust exports
fails here; so does a Python-side method that Kotlin or Swift lacks.
"""

import inspect
import re

import pytest

from conftest import GENERATED

KOTLIN = GENERATED / "kotlin" / "uniffi" / "crmsync" / "crmsync.kt"
SWIFT = GENERATED / "swift" / "crmsync.swift"
SWIFT_HEADER = GENERATED / "swift" / "crmsyncFFI.h"
SWIFT_MODULEMAP = GENERATED / "swift" / "crmsyncFFI.modulemap"

# The API contract: Engine methods by name (Rust snake_case), async or not.
ENGINE_CONSTRUCTORS = ["open", "open_with", "in_memory", "in_memory_with"]
ENGINE_METHODS = {
    "close_database": False,
    "is_closed": False,
    "device_id": False,
    "workspace_id": False,
    "create": False,
    "create_many": True,
    "get": False,
    "update": False,
    "delete": False,
    "restore": False,
    "list": True,
    "count": False,
    "history": False,
    "get_at": False,
    "field_history": False,
    "conflicts": False,
    "define_field": False,
    "define_type": False,
    "pipeline": False,
    "set_pipeline": False,
    "import_csv": True,
    "import_csv_file": True,
    "export_csv": True,
    "export_json": True,
    "changes_since": False,
    "register_listener": False,
    "heads": False,
    "export_changes": False,
    "apply_changes": False,
    "search": True,
    "pipeline_report": True,
    "stage_funnel": True,
    "rfm": True,
    "lifetime_values": True,
    "service_stats": True,
    "sales_forecast": True,
    "product_associations": True,
    "recommend_products": True,
    "visit_plan": True,
    "order_facts": True,
    "order_baskets": True,
    "schema": False,
    "node_id": False,
    "init_admin": False,
    "invite_device": False,
    "join": False,
    "revoke": False,
    "credential": False,
    "revocations": False,
    "enable_network": True,
}
NETWORK_METHODS = {
    "node_id": False,
    "addr": False,
    "add_peer": False,
    "sync_with": True,
    "start_background": False,
    "stop_background": False,
    "status": False,
    "register_status_listener": False,
    "shutdown": True,
    "is_shut_down": False,
}
LISTENER_HANDLE_METHODS = ["unregister", "is_active"]
# Top-level functions, and whether they can fail.
FUNCTIONS = {"credential_info": True, "search_dir": False}

RECORDS = [
    "Record", "NewRecord", "Money", "OrderLine", "FieldDef", "Stage", "HistoryEntry",
    "FieldChange", "Conflict", "RowError", "ImportReport", "Filter", "Sort", "ListQuery",
    "ChangeBatch", "Change", "OpenOptions", "DateRange", "SearchFilters", "Highlight", "Snippet",
    "SearchHit", "SearchResults", "ExchangeRates", "PipelineOptions", "Totals", "GroupTotals",
    "PipelineReport", "FunnelStage", "FunnelReport", "RfmOptions", "RfmRow", "CltvOptions",
    "CltvRow", "ServiceOptions", "RepeatCustomer", "ServiceStats", "Smoothing", "ForecastOptions",
    "ForecastModel", "MonthValue", "SalesForecast", "AprioriOptions", "Itemset", "AssociationRule",
    "Associations", "Recommendation", "VisitWeights", "VisitPlanOptions", "Factor",
    "VisitCandidate", "SchemaField", "SchemaType", "Schema", "CredentialInfo", "NetworkOptions",
    "PeerAddr", "SyncReport", "PeerStatus", "NetStatus", "OrderFact", "Revocation",
]
ENUMS = {
    "FieldValue": ["Text", "LongText", "Int", "Money", "Bool", "Timestamp", "Date", "Enum",
                   "Strings", "Link", "Links", "Lines"],
    "FieldOp": ["Set", "Unset", "SpliceText", "AddItem", "RemoveItem"],
    "FieldKind": ["Text", "LongText", "Int", "Money", "Bool", "Timestamp", "Date", "Enum",
                  "Strings", "Emails", "Link", "Links", "Lines"],
    "FilterOp": ["Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Contains", "Exists", "Missing"],
    "SortOrder": ["Asc", "Desc"],
    "ChangeKind": ["Created", "Updated", "Deleted", "Restored", "Merged"],
    "Segment": ["ImportantKeep", "ImportantDevelop", "ImportantRetain", "General", "Churned"],
    "ForecastMethod": ["HoltWinters", "Holt"],
    "FactorKind": ["OpenDeals", "Inactivity", "AtRisk", "OpenCases"],
    "Role": ["Admin", "Member", "ReadOnly"],
    "Refusal": ["NoCredential", "OtherWorkspace", "UnknownAdmin", "BadSignature", "NodeMismatch",
                "Expired", "Revoked", "UnknownWorkspace", "Busy", "RateLimited", "Other"],
    "ReconcileMode": ["Cursor", "Ranges"],
}
ERROR_VARIANTS = [
    "Validation", "Schema", "NotFound", "AlreadyExists", "Deleted", "Query", "Search", "Store",
    "Document", "TypeMismatch", "Import", "Io", "Analytics", "InvalidInput", "Closed", "Internal",
    "NotJoined", "AlreadyJoined", "NotAdmin", "InvalidCredential", "WrongWorkspace",
    "NotForThisDevice", "PeerRefused", "RefusedByPeer", "Handshake", "Bind", "Connect",
    "Connection", "NetworkClosed", "ReadOnlyPeer", "RefusedAsReadOnly", "Sync",
]


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def lower_first(name):
    return name[0].lower() + name[1:]


@pytest.fixture(scope="module")
def kotlin():
    return KOTLIN.read_text()


@pytest.fixture(scope="module")
def swift():
    return SWIFT.read_text()


def test_all_files_are_generated():
    for path in [KOTLIN, SWIFT, SWIFT_HEADER, SWIFT_MODULEMAP]:
        assert path.is_file() and path.stat().st_size > 0, path


def kotlin_fun(source, name, suspend):
    prefix = r"suspend fun" if suspend else r"(?<!suspend )fun"
    return re.search(rf"override {prefix} `?{camel(name)}`?\(", source)


def swift_func(source, name, is_async):
    # Arguments may hold parentheses of their own (`limit: UInt64 = UInt64(1000)`).
    args = r"\((?:[^()]|\([^()]*\))*\)"
    tail = r"\s*async throws" if is_async else r"\s*(throws)?\s*(->|\{)"
    return re.search(rf"open func `?{camel(name)}`?{args}{tail}", source)


def test_kotlin_declares_every_object_method_and_type(kotlin):
    assert re.search(r"open class Engine\b.*EngineInterface", kotlin)
    assert "open class ListenerHandle" in kotlin
    assert "public interface ChangeListener" in kotlin
    assert re.search(r"fun `onChange`\(`changes`: List<Change>\)", kotlin)
    for name in ENGINE_CONSTRUCTORS:
        assert re.search(rf"fun `{camel(name)}`\([^)]*\): Engine", kotlin), name
    missing = [n for n, a in ENGINE_METHODS.items() if not kotlin_fun(kotlin, n, a)]
    assert missing == []
    assert re.search(r"open class Network\b.*NetworkInterface", kotlin)
    missing = [n for n, a in NETWORK_METHODS.items() if not kotlin_fun(kotlin, n, a)]
    assert missing == []
    assert "public interface NetStatusListener" in kotlin
    assert re.search(r"fun `onStatus`\(`status`: NetStatus\)", kotlin)
    for name, throws in FUNCTIONS.items():
        prefix = r"@Throws\(CrmException::class\) fun" if throws else r"(?<!\) )fun"
        assert re.search(rf"{prefix} `{camel(name)}`\(", kotlin), name
    for name in LISTENER_HANDLE_METHODS:
        assert kotlin_fun(kotlin, name, False), name
    for name in RECORDS:
        assert re.search(rf"^data class {name}\s*\(", kotlin, re.M), name
    for name, variants in ENUMS.items():
        assert re.search(rf"^(sealed|enum) class {name}\b", kotlin, re.M), name
        for v in variants:
            shout = re.sub(r"(?<!^)(?=[A-Z])", "_", v).upper()
            assert re.search(rf"(data class {v}\(|object {v}\b|^\s*{shout}[,;\s])", kotlin, re.M), (
                name,
                v,
            )
    assert "sealed class CrmException: kotlin.Exception()" in kotlin
    for v in ERROR_VARIANTS:
        assert re.search(rf"class {v}\(", kotlin), v
    # Fallible calls throw the one error type.
    assert re.search(r"@Throws\(CrmException::class\)override fun `get`\(", kotlin)


def test_swift_declares_every_object_method_and_type(swift):
    assert re.search(r"open class Engine: EngineProtocol", swift)
    assert "open class ListenerHandle" in swift
    assert re.search(r"public protocol ChangeListener\b", swift)
    assert re.search(r"func onChange\(changes: \[Change\]\) throws", swift)
    for name in ENGINE_CONSTRUCTORS:
        assert re.search(rf"public static func `?{camel(name)}`?\([^)]*\)\s*throws\s*-> Engine", swift), name
    missing = [n for n, a in ENGINE_METHODS.items() if not swift_func(swift, n, a)]
    assert missing == []
    assert re.search(r"open class Network: NetworkProtocol", swift)
    missing = [n for n, a in NETWORK_METHODS.items() if not swift_func(swift, n, a)]
    assert missing == []
    assert re.search(r"public protocol NetStatusListener\b", swift)
    assert re.search(r"func onStatus\(status: NetStatus\) throws", swift)
    for name, throws in FUNCTIONS.items():
        tail = r"\s*throws\s*->" if throws else r"\s*->"
        assert re.search(rf"public func {camel(name)}\([^)]*\){tail}", swift), name
    for name in LISTENER_HANDLE_METHODS:
        assert swift_func(swift, name, False), name
    for name in RECORDS:
        assert re.search(rf"^public struct {name}\b", swift, re.M), name
    for name, variants in ENUMS.items():
        assert re.search(rf"^public enum {name}\b", swift, re.M), name
        for v in variants:
            assert re.search(rf"case `?{lower_first(v)}`?\b", swift), (name, v)
    assert re.search(r"^public\s+enum CrmError: Swift\.Error", swift, re.M)
    for v in ERROR_VARIANTS:
        # uniffi keeps error cases in UpperCamelCase in Swift.
        assert re.search(rf"case `?{v}`?\(", swift), v
    assert "func get(id: String)throws  -> Record?" in swift.replace("open func", "func")


def test_every_python_method_exists_in_kotlin_and_swift(kotlin, swift):
    import crmsync

    for cls, contract in [
        (crmsync.Engine, set(ENGINE_METHODS) | set(ENGINE_CONSTRUCTORS)),
        (crmsync.Network, set(NETWORK_METHODS)),
        (crmsync.ListenerHandle, set(LISTENER_HANDLE_METHODS)),
    ]:
        python = {
            n for n, _ in inspect.getmembers(cls, callable) if not n.startswith("_")
        }
        assert python == contract, f"{cls.__name__}: update the contract in this file"
        for name in python:
            assert re.search(rf"fun `{camel(name)}`\(", kotlin), (cls, name)
            assert re.search(rf"func `?{camel(name)}`?\(", swift), (cls, name)
    for name in FUNCTIONS:
        assert callable(getattr(crmsync, name)), name


def squeezed(source):
    """The source without comments and whitespace, so that shapes match however the generator
    lays out declarations and their doc comments."""
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    source = re.sub(r"//[^\n]*", "", source)
    return re.sub(r"\s+", "", source)


def test_the_calls_bound_last_have_their_types(kotlin, swift):
    """Order facts and baskets, revocations, the search directory, the `UnknownWorkspace`
    refusal and the read-only errors, with the types the app sees (patterns without spaces)."""
    kotlin = squeezed(kotlin)
    for pattern in [
        r"suspendfun`orderFacts`\(\):List<OrderFact>",
        r"suspendfun`orderBaskets`\(\):List<List<kotlin.String>>",
        r"fun`revocations`\(\):List<Revocation>",
        r"fun`revoke`\(`nodeId`:kotlin.String\):Revocation",
        r"fun`searchDir`\(`path`:kotlin.String\):kotlin.String",
        r"dataclassOrderFact\(var`order`:kotlin.String,var`customer`:kotlin.String\?,"
        r"var`at`:java.time.Instant,var`total`:Money\)",
        r"dataclassRevocation\(var`device`:kotlin.String,var`revokedAt`:java.time.Instant\?\)",
        r"dataclassUnknownWorkspace\(val`workspace`:kotlin.String\)",
        r"dataclassBusy\(val`maxSessions`:kotlin.UInt\)",
        r"dataclassRateLimited\(val`bytesPerMinute`:kotlin.ULong,val`retryAfterSecs`:kotlin.UInt\)",
        r"classReadOnlyPeer\(val`detail`:kotlin.String\):CrmException\(\)",
        r"classRefusedAsReadOnly\(val`detail`:kotlin.String\):CrmException\(\)",
    ]:
        assert re.search(pattern, kotlin), pattern
    swift = squeezed(swift)
    for pattern in [
        r"funcorderFacts\(\)asyncthrows->\[OrderFact\]",
        r"funcorderBaskets\(\)asyncthrows->\[\[String\]\]",
        r"funcrevocations\(\)throws->\[Revocation\]",
        r"funcrevoke\(nodeId:String\)throws->Revocation",
        r"publicfuncsearchDir\(path:String\)->String",
        r"publicstructOrderFact:Equatable,Hashable\{publicvarorder:String"
        r"publicvarcustomer:String\?publicvarat:Datepublicvartotal:Money",
        r"publicstructRevocation:Equatable,Hashable\{publicvardevice:String"
        r"publicvarrevokedAt:Date\?",
        r"caseunknownWorkspace\(workspace:String\)",
        r"casebusy\(maxSessions:UInt32\)",
        r"caserateLimited\(bytesPerMinute:UInt64,retryAfterSecs:UInt32\)",
        r"caseReadOnlyPeer\(detail:String\)",
        r"caseRefusedAsReadOnly\(detail:String\)",
    ]:
        assert re.search(pattern, swift), pattern
