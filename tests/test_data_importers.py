"""Dataset files, FineFoundry databases and adapter folders brought into a workspace."""

import json

import duckdb
import pytest

from ff_lib.data import Workspace
from ff_lib.errors import DatasetImportError, InvalidInput


@pytest.fixture
def ws(tmp_path):
    return Workspace.open(tmp_path / "ws")


def pairs(ws, dataset):
    return [(p.prompt, p.response) for p in ws.dataset_pairs(dataset.id)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_jsonl_with_prompt_and_response(ws, tmp_path):
    f = write_jsonl(
        tmp_path / "qa.jsonl",
        [{"prompt": "Hi", "response": "Hello"}, {"prompt": "2+2", "response": "4"}],
    )
    ds = ws.import_dataset(f, "qa")
    assert (ds.name, ds.rows, ds.skipped, ds.source) == ("qa", 2, 0, str(f))
    assert pairs(ws, ds) == [("Hi", "Hello"), ("2+2", "4")]


def test_alpaca_instruction_and_input_are_joined(ws, tmp_path):
    f = write_jsonl(
        tmp_path / "alpaca.jsonl",
        [
            {"instruction": "Translate", "input": "bonjour", "output": "hello"},
            {"instruction": "Say hi", "input": "", "output": "hi"},
        ],
    )
    ds = ws.import_dataset(f, "alpaca")
    assert pairs(ws, ds) == [("Translate\n\nbonjour", "hello"), ("Say hi", "hi")]


def test_json_array_with_question_answer(ws, tmp_path):
    f = tmp_path / "qa.json"
    f.write_text(json.dumps([{"question": "Capital of France?", "answer": "Paris"}]))
    assert pairs(ws, ws.import_dataset(f, "q")) == [("Capital of France?", "Paris")]


def test_csv_with_input_completion_and_empty_prompts_skipped(ws, tmp_path):
    f = tmp_path / "data.csv"
    f.write_text('input,completion\n"a, with comma",x\n,skipped\n"b","y"\n')
    ds = ws.import_dataset(f, "csv")
    assert (ds.rows, ds.skipped) == (2, 1)
    assert pairs(ws, ds) == [("a, with comma", "x"), ("b", "y")]


def test_parquet(ws, tmp_path):
    f = tmp_path / "x.parquet"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT 'p' || i AS prompt, 'r' || i AS response FROM range(3) t(i)) "
        f"TO '{f}' (FORMAT parquet)"
    )
    con.close()
    ds = ws.import_dataset(f, "pq")
    assert pairs(ws, ds) == [("p0", "r0"), ("p1", "r1"), ("p2", "r2")]


def test_explicit_columns_override(ws, tmp_path):
    f = write_jsonl(
        tmp_path / "odd.jsonl", [{"q_text": "Why?", "a_text": "Because", "prompt": "no"}]
    )
    ds = ws.import_dataset(f, "odd", prompt_column="q_text", response_column="a_text")
    assert pairs(ws, ds) == [("Why?", "Because")]


def test_chat_messages_first_user_turn_and_following_assistant(ws, tmp_path):
    f = write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Later"},
                    {"role": "assistant", "content": "Later reply"},
                ]
            },
            {"messages": [{"role": "system", "content": "no user here"}]},
        ],
    )
    ds = ws.import_dataset(f, "chat")
    assert (ds.rows, ds.skipped) == (1, 1)
    assert pairs(ws, ds) == [("Hi", "Hello")]


def test_sharegpt_conversations(ws, tmp_path):
    f = write_jsonl(
        tmp_path / "sharegpt.jsonl",
        [{"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}]}],
    )
    assert pairs(ws, ws.import_dataset(f, "sg")) == [("Q1", "A1")]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("cols.jsonl", '{"text": "a", "label": "b"}\n', "found no prompt and response columns"),
        ("noresp.jsonl", '{"prompt": "a", "label": "b"}\n', "found no a response column"),
        (
            "bad.jsonl",
            '{"prompt": "a", "response": "b"}\n{"prompt": "c", oops\n',
            "line 2 is not one JSON record",
        ),
        ("empty.jsonl", "", "the file is empty"),
        ("header.csv", "prompt,response\n", "the file has no rows"),
        (
            "blank.jsonl",
            '{"prompt": "", "response": "b"}\n',
            "none of its 1 rows can be used.*the prompt is empty",
        ),
        ("notes.txt", "hello", "unknown file type '.txt'"),
    ],
)
def test_bad_files_are_refused_and_write_nothing(ws, tmp_path, name, content, message):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(DatasetImportError, match=message) as err:
        ws.import_dataset(f, "bad")
    assert str(f) in str(err.value)
    assert ws.list_datasets() == []


def test_missing_file_and_unknown_column_are_refused(ws, tmp_path):
    with pytest.raises(DatasetImportError, match=r"missing\.jsonl: the file does not exist"):
        ws.import_dataset(tmp_path / "missing.jsonl", "m")
    f = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "a", "response": "b"}])
    with pytest.raises(DatasetImportError, match="--prompt-column 'nope' is not a column"):
        ws.import_dataset(f, "x", prompt_column="nope")
    assert ws.list_datasets() == []


def test_a_failed_import_keeps_earlier_datasets(ws, tmp_path):
    good = ws.import_dataset(
        write_jsonl(tmp_path / "g.jsonl", [{"prompt": "a", "response": "b"}]), "g"
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"\n')
    with pytest.raises(DatasetImportError):
        ws.import_dataset(bad, "bad")
    assert ws.list_datasets() == [good]


# --- adapter folders --------------------------------------------------------------------------


def make_adapter(folder, base="tiny-llama", text=None):
    folder.mkdir(parents=True)
    config = text if text is not None else json.dumps({"base_model_name_or_path": base, "r": 8})
    (folder / "adapter_config.json").write_text(config)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def test_scan_registers_nested_adapters_once(ws, tmp_path):
    root = tmp_path / "outputs"
    make_adapter(root / "pirate")
    make_adapter(root / "capitals" / "checkpoint-100", base="other-base")
    make_adapter(root / "broken", text="{not json")
    (root / "notes").mkdir()
    result = ws.scan_adapters(root)
    by_name = {r.name: r for r in result.added}
    assert set(by_name) == {"pirate", "capitals/checkpoint-100"}
    assert by_name["capitals/checkpoint-100"].base_model == "other-base"
    assert by_name["pirate"].status == "completed"
    assert by_name["pirate"].adapter_path == (root / "pirate").resolve()
    assert (
        len(result.skipped) == 1 and "broken: unreadable adapter_config.json" in result.skipped[0]
    )

    again = ws.scan_adapters(root)
    assert again.added == []
    assert sum("already registered" in s for s in again.skipped) == 2
    assert len(ws.list_runs()) == 2


def test_scan_of_an_adapter_folder_itself_and_of_nothing(ws, tmp_path):
    one = make_adapter(tmp_path / "solo")
    assert [r.name for r in ws.scan_adapters(one).added] == ["solo"]
    with pytest.raises(InvalidInput, match="not a folder"):
        ws.scan_adapters(tmp_path / "missing")
