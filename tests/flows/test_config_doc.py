from flows.config_doc import DOC_PATH, render


def test_configuration_doc_is_current():
    assert DOC_PATH.read_text() == render(), "docs/configuration.md is stale: run `python -m flows.config_doc`"


def test_env_overrides(monkeypatch):
    from flows.settings import Settings

    monkeypatch.setenv("XASSET_CORRELATION_WINDOWS", "[60, 120]")
    monkeypatch.setenv("XASSET_LIVE__LOOKBACK_SESSIONS", "9")
    monkeypatch.setenv("XASSET_DATA_DIR", "/tmp/elsewhere")
    s = Settings()
    assert s.correlation_windows == [60, 120]
    assert s.live.lookback_sessions == 9
    assert str(s.warehouse_path) == "/tmp/elsewhere/warehouse.duckdb"
