"""The web client end to end: headless Chromium against `kedro api serve` in front of
`kedro endpoint serve`, both started as users start them (subprocesses, free ports).

Needs Chromium at /usr/bin/chromium (Playwright's own browsers are not downloaded); without it
the module is skipped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.serving.contract import PAGE_SECURITY_POLICY
from predictive_maintenance.serving.endpoint import write_endpoint_state
from tests.api.conftest import ENDPOINT_NAME, MODEL_VERSION
from tests.support.cli import KEDRO
from tests.support.net import free_port, wait_for
from tests.support.project import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (install Debian's chromium package to run the web client's "
        "browser tests)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
expect = sync_api.expect

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
FIELDS = (
    "type",
    "air_temperature_k",
    "process_temperature_k",
    "rotational_speed_rpm",
    "torque_nm",
    "tool_wear_min",
)
#: Rows of the presets, as the page fills them (workshop column order).
#: The single-reading check: the page asks for the explanation of its answer (the "Why" chart).
ONE_READING = re.compile(r"/predict\?explain=true$")
NORMAL = "M,298.1,308.6,1551,42.8,0"
HEAT_DISSIPATION = "L,302.5,310.5,1300,50,100"
OVERSTRAIN = "L,299,309.5,1500,55,220"


# ---- the servers and the browser -------------------------------------------------------------
def _server_environment() -> dict[str, str]:
    """The caller's environment without anything that would change what the servers do."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in ("API_KEY", "CORS_ALLOW_ORIGINS")
    }
    return {
        **environment,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "COLUMNS": "200",
    }


#: Logs every Content-Security-Policy violation on the console (Chromium logs most of them itself,
#: but not all in the same words): the page fixture fails a test that caused one.
CSP_REPORT = "CSP violation:"
REPORT_CSP_VIOLATIONS = f"""document.addEventListener("securitypolicyviolation", event => {{
    console.error("{CSP_REPORT} " + event.effectiveDirective + " blocked " + event.blockedURI);
}});"""


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


@pytest.fixture(scope="module")
def endpoint_state(insight_model, tmp_path_factory) -> Path:
    """An endpoint state naming the trained model as version MODEL_VERSION, as a deployment
    writes it: the full model packaged with its calibration, failure-mode model and card."""
    directory = tmp_path_factory.mktemp("web-client-endpoint")
    archive = directory / "model.tar.gz"
    archive.write_bytes(insight_model.archive)
    state = directory / f"{ENDPOINT_NAME}.json"
    write_endpoint_state(
        state,
        {
            "endpoint_name": ENDPOINT_NAME,
            "model_group": "predictive-maintenance",
            "model_version": MODEL_VERSION,
            "model_archive": str(archive),
            "model_archive_sha256": sha256_hex(insight_model.archive),
            "deployed_at": datetime.now(timezone.utc).isoformat(),
        },
    )
    return state


@pytest.fixture(scope="module")
def web_client(endpoint_state: Path, tmp_path_factory) -> Iterator[str]:
    """`kedro endpoint serve` and `kedro api serve` in front of it; the API's base URL."""
    logs = tmp_path_factory.mktemp("web-client-logs")
    endpoint_port, api_port = free_port(), free_port()
    commands = {
        "endpoint": [
            KEDRO,
            "endpoint",
            "serve",
            "--port",
            str(endpoint_port),
            "--state",
            str(endpoint_state),
            "--endpoint-name",
            ENDPOINT_NAME,
        ],
        "api": [
            KEDRO,
            "api",
            "serve",
            "--port",
            str(api_port),
            "--endpoint-url",
            f"http://127.0.0.1:{endpoint_port}",
            "--endpoint-name",
            ENDPOINT_NAME,
        ],
    }
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():  # both start at once: kedro's start-up is slow
            with (logs / f"{name}.log").open("wb") as log:
                processes[name] = subprocess.Popen(
                    command,
                    cwd=PROJECT_ROOT,
                    env=_server_environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        checks = {
            "endpoint": f"http://127.0.0.1:{endpoint_port}/ping",
            "api": f"http://127.0.0.1:{api_port}/health",
        }
        for name, url in checks.items():
            try:
                wait_for(processes[name], lambda url=url: _answers(url), timeout=90)
            except AssertionError as error:
                log = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(
                    f"`kedro {name} serve` did not start: {error}\n{log}"
                ) from None
        yield f"http://127.0.0.1:{api_port}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
        except sync_api.Error as error:
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {error}")
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_page(browser, web_client) -> Iterator[Callable[..., object]]:
    """Opens the page in a fresh browser context (empty storage) once the API's description is
    in; afterwards checks that no script failed and nothing outside the API was requested."""
    contexts = []
    problems: list[str] = []
    elsewhere: list[str] = []
    violations: list[str] = []

    def console(message) -> None:
        if CSP_REPORT in message.text or "Content Security Policy" in message.text:
            violations.append(message.text)
        # The browser logs every 4xx it receives; the tests provoke some on purpose.
        elif message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(message.text)

    def request(request) -> None:
        if not request.url.startswith((f"{web_client}/", "data:", "blob:")):
            elsewhere.append(request.url)

    def open_(width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US")
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
        page.on("console", console)
        page.on("request", request)
        page.goto(f"{web_client}/")
        expect(page.locator("#api-info a")).to_have_text("openapi.json")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert violations == [], "the page did something its Content-Security-Policy forbids"
    assert problems == [], "the page logged errors"
    assert elsewhere == [], "the page requested something other than the API"


@pytest.fixture
def page(open_page):
    return open_page()


# ---- helpers ---------------------------------------------------------------------------------
def fill(page, row: str) -> None:
    values = row.split(",")
    page.select_option("#type", values[0])
    for name, value in zip(FIELDS[1:], values[1:], strict=True):
        page.fill(f"#{name}", value)


def upload(page, name: str, text: str) -> None:
    page.set_input_files(
        "#csv-file", files=[{"name": name, "mimeType": "text/csv", "buffer": text.encode()}]
    )


def percent_text(probability: float) -> str:
    """A probability as the page writes it (en-US; app.js's formatPercent, between 0.01 % and
    99.99 %)."""
    percent = probability * 100
    assert 0.01 <= percent <= 99.99, percent
    return f"{percent:,.{2 if percent < 1 else 1}f} %"


def decision_of(page) -> str:
    return page.get_by_test_id("decision").inner_text()


# ---- the page's Content-Security-Policy ------------------------------------------------------
def test_the_page_is_served_with_its_content_security_policy_and_keeps_to_it(browser, web_client):
    """The page's answer carries the full policy (the HTTP header, so frame-ancestors counts too),
    and the browser enforces it: a style attribute set from a script is refused and reported,
    which is how the page fixture would catch the page itself doing so."""
    context = browser.new_context(locale="en-US")
    reports: list[str] = []
    try:
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        page = context.new_page()
        page.on("console", lambda message: reports.append(message.text))
        response = page.goto(f"{web_client}/")
        headers = response.all_headers()
        expect(page.locator("#api-info a")).to_have_text("openapi.json")
        for asset in ("static/app.js", "static/style.css"):
            answer = page.request.get(f"{web_client}/{asset}")
            assert answer.headers["content-security-policy"] == PAGE_SECURITY_POLICY, asset
        assert not [text for text in reports if CSP_REPORT in text], reports

        with page.expect_console_message(lambda message: CSP_REPORT in message.text):
            page.evaluate("document.body.setAttribute('style', 'outline: 1px solid red')")
        outline = page.evaluate("getComputedStyle(document.body).outlineStyle")
    finally:
        context.close()
    assert headers["content-security-policy"] == PAGE_SECURITY_POLICY
    assert "frame-ancestors 'none'" in PAGE_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert "server" not in headers
    assert outline == "none"  # the inline style was refused...
    assert any(f"{CSP_REPORT} style-src-attr" in text for text in reports), reports  # ...and seen


# ---- one reading -----------------------------------------------------------------------------
def test_the_form_takes_the_ranges_and_defaults_from_the_api_description(page):
    air = page.locator("#air_temperature_k")

    assert (air.get_attribute("min"), air.get_attribute("max")) == ("250", "350")
    assert page.locator("#rotational_speed_rpm").get_attribute("max") == "10000"
    assert page.locator("label[for=air_temperature_k]").inner_text() == "Air temperature [K]"
    assert page.locator("#type option").all_inner_texts() == ["L (low)", "M (medium)", "H (high)"]
    values = [page.input_value(f"#{name}") for name in FIELDS]
    assert ",".join(values) == "L,298.4,308.2,1582,70.7,216"
    assert page.locator("#result").is_hidden()


def test_a_reading_gets_a_probability_a_decision_and_the_model_version(page):
    fill(page, "L,298.4,308.2,1582,70.7,216")
    with page.expect_response(ONE_READING) as response:
        page.get_by_test_id("predict-button").click()
    answer = response.value.json()

    expect(page.get_by_test_id("decision")).to_have_text("Failure predicted")
    assert answer["failure_predicted"] is True
    assert answer["model_version"] == MODEL_VERSION
    assert page.get_by_test_id("model-version").inner_text() == str(MODEL_VERSION)
    percent = f"{answer['failure_probability'] * 100:.1f} %"
    assert page.get_by_test_id("probability").inner_text() == percent
    assert page.locator("#gauge-percent").text_content() == percent
    marker = page.get_by_test_id("gauge-threshold")
    assert float(marker.get_attribute("data-threshold")) == answer["threshold"]
    assert page.get_by_test_id("threshold").inner_text() == f"{answer['threshold'] * 100:.1f} %"
    assert "Failure predicted" in page.get_by_test_id("message").inner_text()


@pytest.mark.parametrize(
    ("preset", "decision", "rule"),
    [
        ("normal", "No failure predicted", None),
        ("heat", "Failure predicted", "heat"),
        ("power", "Failure predicted", "power"),
        ("overstrain", "Failure predicted", "overstrain"),
    ],
)
def test_presets_fill_the_form_and_check_asks_the_model(page, preset, decision, rule):
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.get_by_test_id(f"preset-{preset}").click()

    expect(page.get_by_test_id("preset-note")).to_be_visible()
    met = page.locator("#derived li.rule--met").evaluate_all(
        "items => items.map(i => i.dataset.rule)"
    )
    assert met == ([rule] if rule else [])
    assert requests == []  # filling the form asks nothing
    assert page.locator("#result").is_hidden()
    expect(page.get_by_test_id("history-item")).to_have_count(0)

    with page.expect_response(ONE_READING):
        page.get_by_test_id("predict-button").click()
    expect(page.get_by_test_id("decision")).to_have_text(decision)
    expect(page.get_by_test_id("history-item")).to_have_count(1)
    # "Why": the readings that pushed the risk, with values and units; a reading that breaks
    # the power rule (2,639 W, below 3,500 W) has power among its top reasons raising it.
    expect(page.get_by_test_id("why")).to_be_visible()
    bars = page.locator("#why-bars li")
    assert 1 <= bars.count() <= 6
    reasons = bars.evaluate_all(
        "items => items.map(i => [i.dataset.feature, i.dataset.direction,"
        " i.querySelector('.why__value').textContent,"
        " Number(i.querySelector('rect').getAttribute('width'))])"
    )
    assert max(width for *_, width in reasons) == pytest.approx(50)
    if preset == "power":
        raising = [(name, value) for name, direction, value, _ in reasons if direction == "raises"]
        assert ("power_w", "2,639 W") in raising[:3], reasons


@pytest.mark.parametrize(
    ("preset", "mode", "which"),
    [
        ("power", "pwf", "Most likely: power failure"),
        ("heat", "hdf", "Most likely: heat dissipation failure"),
        ("overstrain", "osf", "Most likely: overstrain failure"),
        ("normal", "none", "No failure is likely."),
    ],
)
def test_the_answer_says_how_sure_and_which_failure(page, preset, mode, which):
    page.get_by_test_id(f"preset-{preset}").click()
    with page.expect_response(ONE_READING) as response:
        page.get_by_test_id("predict-button").click()
    answer = response.value.json()

    expect(page.get_by_test_id("which")).to_be_visible()
    assert page.get_by_test_id("which").get_attribute("data-mode") == mode
    assert page.get_by_test_id("which-text").inner_text().startswith(which)
    percent = percent_text(answer["failure_mode"]["probability"])
    if mode == "none":
        none = answer["failure_mode"]["probabilities"]["none"]
        note = page.get_by_test_id("which-note").inner_text()
        assert f"gives no failure {percent_text(none)}" in note, note
        assert note.endswith(f"({percent} of such failures).")
    else:
        assert (
            page.get_by_test_id("which-text").inner_text()
            == f"{which} ({percent} of failures with these readings)"
        )
    # How sure: the calibrated probability in words, the raw score where it was.
    probability = answer["probability"]
    sure = page.get_by_test_id("sure-text").inner_text()
    if 0.0095 <= probability < 0.995:
        assert sure.startswith(f"About {round(probability * 100)} in 100 machines"), sure
    assert float(page.get_by_test_id("sure").get_attribute("data-probability")) == probability
    assert page.get_by_test_id("probability").inner_text() == percent_text(
        answer["failure_probability"]
    )
    assert sure.endswith(f"({percent_text(probability)}).")


def test_the_model_card_is_shown_from_the_answer(page, insight_model):
    card = insight_model.card
    page.get_by_test_id("preset-power").click()
    with page.expect_response(ONE_READING) as response:
        page.get_by_test_id("predict-button").click()
    assert response.value.json()["model_card"] == card

    box = page.get_by_test_id("model-card")
    expect(box).to_be_visible()
    expect(page.get_by_test_id("model-card-facts")).to_be_hidden()  # folded until asked
    box.locator("summary").click()
    facts = dict(
        page.locator("#model-card-facts dd").evaluate_all(
            "items => items.map(i => [i.dataset.fact, i.textContent])"
        )
    )
    assert f"F1 {card['metrics']['f1']:.3f}" in facts["test"]
    assert f"{card['data']['splits']['test']['rows']:,} rows" in facts["data"]
    assert f"ECE {card['calibration']['ece']['calibrated']:.4f}" in facts["calibration"]
    modes = card["failure_modes"]
    assert f"PWF {modes['per_mode']['pwf']['f1']:.2f}" in facts["modes"]
    assert f"{modes['rule_modes_macro_f1']:.3f}" in facts["modes"]
    assert "TWF" in facts["modes"]
    assert "(unpredictable)" in facts["modes"]
    if "expected_cost_per_1000" in card["metrics"]:
        assert "per 1,000 machines" in facts["cost"]
    assert facts["use"] == card["intended_use"]
    limits = page.locator("#model-card-limits li").all_inner_texts()
    assert limits == (card["known_limits"] or ["None recorded."])


def test_an_implausible_value_is_refused_by_the_api_naming_the_field(page):
    # The input's own max would stop the page before it asks; remove it to reach the API.
    page.eval_on_selector("#air_temperature_k", "input => { input.removeAttribute('max'); }")
    page.fill("#air_temperature_k", "5000")
    with page.expect_response(ONE_READING) as response:
        page.get_by_test_id("predict-button").click()

    assert response.value.status == 400
    assert response.value.json()["field"] == "air_temperature_k"
    message = page.get_by_test_id("message")
    expect(message).to_contain_text("Air temperature [K]")
    expect(message).to_contain_text("5000.0 is outside the plausible range [250.0, 350.0]")
    expect(message).to_have_class("message message--error")
    assert page.locator("#air_temperature_k").get_attribute("aria-invalid") == "true"
    assert page.locator("#result").is_hidden()
    assert page.get_by_test_id("derived-panel").is_hidden()


def test_an_invalid_input_shows_only_the_error(page):
    """After an answer, an implausible reading hides that answer and the failure-mode rules
    (which would be computed from nonsense); valid readings bring the rules back."""
    page.get_by_test_id("preset-heat").click()
    page.get_by_test_id("predict-button").click()
    expect(page.get_by_test_id("decision")).to_have_text("Failure predicted")
    expect(page.get_by_test_id("derived-panel")).to_be_visible()

    page.fill("#process_temperature_k", "4000")
    expect(page.get_by_test_id("derived-panel")).to_be_hidden()  # while typing already
    page.get_by_test_id("predict-button").click()

    expect(page.get_by_test_id("message")).to_have_text(
        "Process temperature [K]: 4000 is outside the plausible range 250–400 K."
    )
    expect(page.get_by_test_id("result")).to_be_hidden()
    expect(page.get_by_test_id("derived-panel")).to_be_hidden()
    expect(page.get_by_test_id("preset-note")).to_be_hidden()
    assert page.locator("#derived li").count() == 0

    page.fill("#process_temperature_k", "310.5")
    expect(page.get_by_test_id("derived-panel")).to_be_visible()
    assert page.locator("#derived li.rule--met").evaluate_all(
        "items => items.map(i => i.dataset.rule)"
    ) == ["heat"]


def test_the_page_checks_the_ranges_before_asking(page):
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.fill("#torque_nm", "-3")
    page.get_by_test_id("predict-button").click()

    expect(page.get_by_test_id("message")).to_have_text(
        "Torque [Nm]: -3 is outside the plausible range 0–500 Nm."
    )
    assert page.evaluate("document.activeElement.id") == "torque_nm"
    assert requests == []


def test_network_errors_are_explained(page):
    page.route(ONE_READING, lambda route: route.abort("connectionrefused"))
    page.get_by_test_id("predict-button").click()

    expect(page.get_by_test_id("message")).to_contain_text("Cannot reach the API")
    expect(page.get_by_test_id("predict-button")).to_be_enabled()


def test_the_api_key_is_sent_and_kept_for_the_tab(page):
    page.fill("#api-key", "s3cret")
    with page.expect_request(ONE_READING) as request:
        page.get_by_test_id("predict-button").click()

    assert request.value.headers["x-api-key"] == "s3cret"
    page.reload()
    expect(page.locator("#api-key")).to_have_value("s3cret")


# ---- history ---------------------------------------------------------------------------------
def test_the_history_keeps_the_last_ten_checks(page):
    page.get_by_test_id("preset-normal").click()
    page.get_by_test_id("predict-button").click()
    expect(page.get_by_test_id("history-item")).to_have_count(1)
    page.get_by_test_id("preset-overstrain").click()
    page.get_by_test_id("predict-button").click()
    expect(page.get_by_test_id("history-item")).to_have_count(2)
    items = page.get_by_test_id("history-item")
    assert items.nth(0).inner_text().startswith("Failure")  # newest first
    assert items.nth(1).inner_text().startswith("No failure")

    for _ in range(9):
        page.get_by_test_id("predict-button").click()
        expect(page.get_by_test_id("predict-button")).to_be_enabled()
    expect(items).to_have_count(10)

    page.reload()
    expect(items).to_have_count(10)
    items.nth(9).click()  # the oldest left: the overstrain preset, loaded back into the form
    assert ",".join(page.input_value(f"#{name}") for name in FIELDS) == OVERSTRAIN
    page.get_by_test_id("clear-history").click()
    expect(items).to_have_count(0)
    expect(page.get_by_test_id("history-empty")).to_be_visible()
    assert page.evaluate("localStorage.length") == 0


# ---- many readings ---------------------------------------------------------------------------
DATA_SET_HEADER = (
    "UDI,Product ID,Type,Air temperature [K],Process temperature [K],Rotational speed [rpm],"
    "Torque [Nm],Tool wear [min],Machine failure,TWF,HDF,PWF,OSF,RNF"
)


def _data_set_row(number: int, row: str) -> str:
    return f"{number},X{number},{row},0,0,0,0,0,0"


def _reordered(row: str) -> str:
    kind, air, process, speed, torque, wear = row.split(",")
    return ",".join([wear, kind, torque, speed, process, air])


DATA_SET_FILE = "\r\n".join(
    [DATA_SET_HEADER]
    + [_data_set_row(i, r) for i, r in enumerate([NORMAL, HEAT_DISSIPATION, OVERSTRAIN], 1)]
)


@pytest.mark.parametrize(
    ("csv", "lines", "ids"),
    [
        pytest.param(
            f"{NORMAL}\n{HEAT_DISSIPATION}\n{OVERSTRAIN}\n", ["1", "2", "3"], [], id="bare"
        ),
        pytest.param(
            DATA_SET_FILE, ["2", "3", "4"], [["1", "X1"], ["2", "X2"], ["3", "X3"]], id="data-set"
        ),
        pytest.param(
            "tool_wear_min,type,torque_nm,rotational_speed_rpm,process_temperature_k,"
            "air_temperature_k\r\n"
            + "\r\n".join(_reordered(row) for row in [NORMAL, HEAT_DISSIPATION])
            + "\r\n\r\n"
            + _reordered(OVERSTRAIN)
            + "\r\n",
            ["2", "3", "5"],
            [],
            id="field-name-header",
        ),
    ],
)
def test_a_csv_file_goes_to_the_api_as_it_is_and_shows_a_table_and_a_chart(page, csv, lines, ids):
    with page.expect_request("**/predict") as request:
        upload(page, "readings.csv", csv)

    assert request.value.headers["content-type"] == "text/csv"
    assert request.value.post_data_buffer == csv.encode()  # the file's bytes, as they are
    rows = page.get_by_test_id("batch-row")
    expect(rows).to_have_count(3)
    assert rows.locator("th").all_inner_texts() == lines
    decisions = rows.locator("td.decision-cell").all_inner_texts()
    assert decisions == ["No failure", "Failure predicted", "Failure predicted"]
    file_lines = csv.replace("\r\n", "\n").split("\n")
    assert rows.locator("td.line-text").all_inner_texts() == [
        file_lines[int(line) - 1] for line in lines
    ]
    head = page.locator("#batch-head th").all_inner_texts()
    if ids:
        assert head[:3] == ["Line", "UDI", "Product ID"]
        assert [rows.nth(i).locator("td").all_inner_texts()[:2] for i in range(3)] == ids
    else:
        assert "UDI" not in head
    expect(page.get_by_test_id("batch-bar")).to_have_count(3)
    expect(page.get_by_test_id("batch-threshold")).to_have_count(1)
    expect(page.get_by_test_id("batch-summary")).to_contain_text("2 with a failure predicted")
    expect(page.get_by_test_id("batch-download")).to_be_visible()


def test_the_results_download_as_the_file_with_four_columns_added(page):
    upload(page, "readings.csv", DATA_SET_FILE)
    expect(page.get_by_test_id("batch-row")).to_have_count(3)
    with page.expect_download() as download:
        page.get_by_test_id("batch-download").click()

    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == (
        f"{DATA_SET_HEADER},failure_probability,failure_predicted,threshold,model_version"
    )
    assert len(lines) == 4
    assert lines[3].startswith(f"{_data_set_row(3, OVERSTRAIN)},")
    assert lines[3].split(",")[-3] == "true"
    assert lines[3].endswith(f",{MODEL_VERSION}")


@pytest.mark.parametrize(
    "csv",
    [
        pytest.param(
            f"{DATA_SET_HEADER}\n"
            + "\n".join(_data_set_row(i, row) for i, row in enumerate([NORMAL, "M,1,2,3,abc,0"])),
            id="bad-field",
        ),
        pytest.param("Type,Air temperature [K],Torque [Nm]\nL,298.4,70.7\n", id="header-column"),
        pytest.param("L;298,4;308,2;1582;70,7;216\n", id="semicolons"),
        pytest.param(f"{NORMAL}\n\n{NORMAL},1\n", id="extra-field"),
        pytest.param("\n \n", id="blank-lines"),
    ],
)
def test_a_file_the_api_refuses_gets_the_apis_message(page, csv):
    with page.expect_response("**/predict") as response:
        upload(page, "readings.csv", csv)

    assert response.value.status == 400
    api_message = response.value.json()["message"]
    message = page.get_by_test_id("batch-message")
    expect(message).to_have_text(api_message[0].upper() + api_message[1:])
    expect(message).to_have_class("message message--error")
    assert page.get_by_test_id("batch-result").is_hidden()


def test_the_message_names_the_line_as_a_spreadsheet_does(page):
    csv = f"{DATA_SET_HEADER}\n\n" + _data_set_row(1, "M,298.1,308.6,1551,abc,0")
    upload(page, "readings.csv", csv)

    expect(page.get_by_test_id("batch-message")).to_have_text(
        "Line 3, field torque_nm: 'abc' is not a number"
    )


def test_a_failed_batch_clears_the_previous_results(page):
    upload(page, "good.csv", f"{NORMAL}\n{OVERSTRAIN}\n")
    expect(page.get_by_test_id("batch-row")).to_have_count(2)

    page.fill("#csv-text", f"{NORMAL}\nL,298.4,308.2,1582,600,216\n")
    with page.expect_response("**/predict"):
        page.get_by_test_id("batch-button").click()

    expect(page.get_by_test_id("batch-message")).to_have_text(
        "Line 2, field torque_nm: 600.0 is outside the plausible range [0.0, 500.0]"
    )
    expect(page.get_by_test_id("batch-result")).to_be_hidden()
    expect(page.get_by_test_id("batch-download")).to_be_hidden()
    expect(page.get_by_test_id("batch-row")).to_have_count(0)


def test_the_pasted_text_is_sent_once_edited_and_nothing_without_text(page):
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.fill("#csv-text", "")
    page.get_by_test_id("batch-button").click()
    expect(page.get_by_test_id("batch-message")).to_have_text(
        "Choose a CSV file or paste readings first."
    )
    assert requests == []

    page.fill("#csv-text", f"{NORMAL}\n")
    with page.expect_request("**/predict") as request:
        page.get_by_test_id("batch-button").click()
    assert request.value.post_data == f"{NORMAL}\n"


CHART_TEXT_BOXES = """chart => Array.from(chart.querySelectorAll('text'), text => {
    const box = text.getBoundingClientRect();
    return {text: text.textContent, left: box.left, right: box.right, top: box.top,
            bottom: box.bottom};
})"""


@pytest.mark.parametrize(
    ("width", "readings", "first_line"),
    [(1280, 3, 1), (1280, 16, 9_991), (375, 16, 9_991), (375, 12, 1), (375, 400, 2)],
)
def test_the_charts_labels_do_not_overlap(open_page, width, readings, first_line):
    """Measured in Chromium: every label of the chart (line numbers, scale, threshold) has its
    own box, inside the chart."""
    page = open_page(width=width, height=900)
    rows = [(NORMAL, OVERSTRAIN, HEAT_DISSIPATION)[i % 3] for i in range(readings)]
    csv = "\n" * (first_line - 1) + "\n".join(rows) + "\n"  # blank lines: large line numbers
    upload(page, "readings.csv", csv)
    expect(page.get_by_test_id("batch-bar")).to_have_count(readings)

    chart = page.get_by_test_id("batch-chart")
    boxes = chart.evaluate(CHART_TEXT_BOXES)
    frame = chart.bounding_box()
    labels = [box["text"] for box in boxes if box["text"].isdigit()]
    assert labels[0] == str(first_line)
    assert len(labels) >= min(readings, 3)
    assert len(boxes) == len(labels) + 4  # 0 %, 50 %, 100 %, threshold
    for box in boxes:
        assert box["right"] > box["left"]
        inside = (
            frame["x"] <= box["left"] <= box["right"] <= frame["x"] + frame["width"],
            frame["y"] <= box["top"] <= box["bottom"] <= frame["y"] + frame["height"],
        )
        assert inside == (True, True), (box, frame)
    for index, one in enumerate(boxes):
        for other in boxes[index + 1 :]:
            apart = (
                one["right"] <= other["left"]
                or other["right"] <= one["left"]
                or one["bottom"] <= other["top"]
                or other["bottom"] <= one["top"]
            )
            assert apart, (one, other)


# ---- a phone ---------------------------------------------------------------------------------
def test_nothing_scrolls_sideways_at_phone_width(open_page):
    page = open_page(width=375, height=800)
    page.get_by_test_id("preset-heat").click()
    page.get_by_test_id("predict-button").click()
    expect(page.get_by_test_id("decision")).to_have_text("Failure predicted")
    upload(page, "readings.csv", f"{DATA_SET_HEADER}\n" + _data_set_row(1, OVERSTRAIN))
    expect(page.get_by_test_id("batch-row")).to_have_count(1)
    page.locator("details.derived summary").click()

    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.body.scrollWidth]"
    )
    assert widths[0] <= widths[1] == 375
    assert widths[2] <= 375
    # Every control is reachable without scrolling sideways.
    right_edges = page.locator("input, select, button, textarea").evaluate_all(
        "elements => elements.filter(e => e.offsetParent).map(e => e.getBoundingClientRect().right)"
    )
    assert max(right_edges) <= 375
