"""Dataset files as people have them: published layouts, Excel's encodings, compressed files."""

import gzip
import json

import pytest

from ff_lib.data import Workspace
from ff_lib.errors import DatasetImportError


@pytest.fixture
def ws(tmp_path):
    return Workspace.open(tmp_path / "ws")


def pairs(ws, dataset):
    return [(p.prompt, p.response) for p in ws.dataset_pairs(dataset.id)]


def jsonl(records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# --- published layouts (column names from the datasets' cards) ---------------------------------


def test_dolly_context_is_joined_to_the_instruction(ws, tmp_path):
    # databricks/databricks-dolly-15k: instruction, context, response, category
    f = tmp_path / "dolly.jsonl"
    f.write_text(
        jsonl(
            [
                {
                    "instruction": "When was Virgin Australia founded?",
                    "context": "Virgin Australia commenced services on 31 August 2000.",
                    "response": "31 August 2000",
                    "category": "closed_qa",
                },
                {"instruction": "Name a fish.", "context": "", "response": "Tope", "category": "x"},
            ]
        )
    )
    ds = ws.import_dataset(f, "dolly")
    assert pairs(ws, ds) == [
        (
            "When was Virgin Australia founded?\n\n"
            "Virgin Australia commenced services on 31 August 2000.",
            "31 August 2000",
        ),
        ("Name a fish.", "Tope"),
    ]
    assert any("'context'" in n and "'instruction'" in n for n in ds.notes)


def test_openorca_system_prompt_is_named_not_silently_dropped(ws, tmp_path):
    # Open-Orca/OpenOrca: id, system_prompt, question, response
    f = tmp_path / "orca.jsonl"
    f.write_text(
        jsonl([{"id": "1", "system_prompt": "Be brief.", "question": "2+2?", "response": "4"}])
    )
    ds = ws.import_dataset(f, "orca")
    assert pairs(ws, ds) == [("2+2?", "4")]
    assert any("'system_prompt'" in n for n in ds.notes)


def test_a_second_prompt_or_response_column_is_named(ws, tmp_path):
    f = tmp_path / "two.jsonl"
    f.write_text(jsonl([{"prompt": "p", "question": "q", "response": "r", "answer": "a"}]))
    ds = ws.import_dataset(f, "two")
    assert pairs(ws, ds) == [("p", "r")]
    assert "column 'question' is not imported: the prompt is 'prompt'" in ds.notes[0]
    assert "column 'answer' is not imported: the response is 'response'" in ds.notes[1]


def test_answers_of_mixed_types_import_as_plain_text(ws, tmp_path):
    f = tmp_path / "mixed.jsonl"
    f.write_text(
        jsonl(
            [
                {"prompt": "6*7", "response": 42},
                {"prompt": "capital of France", "response": "Paris"},
                {"prompt": "pi", "response": 3.14},
                {"prompt": "is water wet", "response": True},
            ]
        )
    )
    ds = ws.import_dataset(f, "mixed")
    assert pairs(ws, ds) == [
        ("6*7", "42"),
        ("capital of France", "Paris"),
        ("pi", "3.14"),
        ("is water wet", "true"),
    ]


def test_a_column_of_numbers_that_turns_to_text_late_in_a_big_file(ws, tmp_path):
    # Past DuckDB's type-sniffing sample: the column was typed as numbers, then refused.
    csv_file = tmp_path / "late.csv"
    csv_file.write_text(
        "prompt,response\n" + "".join(f"p{i},{i}\n" for i in range(30000)) + "last,a word\n"
    )
    ds = ws.import_dataset(csv_file, "csv")
    assert ds.rows == 30001 and pairs(ws, ds)[-2:] == [("p29999", "29999"), ("last", "a word")]
    json_file = tmp_path / "late.jsonl"
    json_file.write_text(
        jsonl([{"prompt": f"p{i}", "response": i} for i in range(30000)])
        + jsonl([{"prompt": "last", "response": "a word"}])
    )
    ds = ws.import_dataset(json_file, "json")
    assert pairs(ws, ds)[-2:] == [("p29999", "29999"), ("last", "a word")]


def test_csv_answers_stay_as_written(ws, tmp_path):
    prices = tmp_path / "prices.csv"
    prices.write_text("prompt,response\nprice of tea,1.50\nprice of milk,2.25\n")
    assert [r for _, r in pairs(ws, ws.import_dataset(prices, "p"))] == ["1.50", "2.25"]
    agents = tmp_path / "agents.csv"
    agents.write_text("prompt,response\nBond,007\nTrevelyan,006\n")
    assert [r for _, r in pairs(ws, ws.import_dataset(agents, "a"))] == ["007", "006"]


# --- encodings ---------------------------------------------------------------------------------

EXCEL_CSV = "prompt,response\nCafé au lait?,Oui — très bon\n"


def test_a_windows_1252_csv_is_refused_with_how_to_resave_it(ws, tmp_path):
    f = tmp_path / "excel.csv"
    f.write_bytes(EXCEL_CSV.encode("cp1252"))
    with pytest.raises(DatasetImportError) as err:
        ws.import_dataset(f, "excel")
    message = str(err.value)
    assert "not UTF-8" in message and "line 2" in message and "0xe9" in message
    assert "CSV UTF-8" in message and "--encoding" in message
    assert "CSV Error" not in message
    assert ws.list_datasets() == []


def test_an_8_bit_file_is_decoded_with_the_encoding_the_user_names(ws, tmp_path):
    f = tmp_path / "excel.csv"
    f.write_bytes(EXCEL_CSV.encode("cp1252"))
    ds = ws.import_dataset(f, "excel", encoding="cp1252")
    assert pairs(ws, ds) == [("Café au lait?", "Oui — très bon")]
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(jsonl([{"prompt": "Straße?", "response": "Größe"}]).encode("latin-1"))
    assert pairs(ws, ws.import_dataset(latin, "l", encoding="latin-1")) == [("Straße?", "Größe")]
    with pytest.raises(DatasetImportError, match="unknown encoding 'klingon'"):
        ws.import_dataset(latin, "l", encoding="klingon")


def test_utf16_with_a_bom_is_decoded_and_said(ws, tmp_path):
    f = tmp_path / "unicode.csv"
    f.write_bytes(EXCEL_CSV.encode("utf-16"))  # with a byte-order mark
    ds = ws.import_dataset(f, "u16")
    assert pairs(ws, ds) == [("Café au lait?", "Oui — très bon")]
    assert any("UTF-16" in n for n in ds.notes)


def test_utf16_without_a_bom_is_refused_by_name(ws, tmp_path):
    f = tmp_path / "nobom.csv"
    f.write_bytes(EXCEL_CSV.encode("utf-16-le"))
    with pytest.raises(DatasetImportError, match="UTF-16 without a byte-order mark"):
        ws.import_dataset(f, "x")


# --- line numbers are the file's own -----------------------------------------------------------


def test_a_broken_jsonl_record_is_reported_on_its_own_line(ws, tmp_path):
    f = tmp_path / "broken.jsonl"
    f.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c"\n{"prompt": "d"}\n')
    with pytest.raises(DatasetImportError, match=r"line 2\b"):
        ws.import_dataset(f, "b")


def test_a_csv_row_with_an_extra_field_is_reported_on_its_own_line(ws, tmp_path):
    f = tmp_path / "extra.csv"
    f.write_text("prompt,response\na,b\nc,d,e\nf,g\n")
    with pytest.raises(DatasetImportError, match=r"line 3 has 3 fields.*header has 2"):
        ws.import_dataset(f, "x")


# --- files DuckDB reads anyway -----------------------------------------------------------------


def test_tsv_and_compressed_files_are_accepted(ws, tmp_path):
    tsv = tmp_path / "data.tsv"
    tsv.write_text("prompt\tresponse\na, with comma\tx\n")
    assert pairs(ws, ws.import_dataset(tsv, "tsv")) == [("a, with comma", "x")]
    records = [{"prompt": "Hi", "response": "Hello"}]
    with gzip.open(tmp_path / "d.jsonl.gz", "wt", encoding="utf-8") as out:
        out.write(jsonl(records))
    with gzip.open(tmp_path / "d.json.gz", "wt", encoding="utf-8") as out:
        out.write(json.dumps(records))
    with gzip.open(tmp_path / "d.csv.gz", "wt", encoding="utf-8") as out:
        out.write("prompt,response\nHi,Hello\n")
    for name in ("d.jsonl.gz", "d.json.gz", "d.csv.gz"):
        assert pairs(ws, ws.import_dataset(tmp_path / name, name)) == [("Hi", "Hello")], name


def test_a_compressed_cp1252_csv_is_checked_too(ws, tmp_path):
    with gzip.open(tmp_path / "x.csv.gz", "wb") as out:
        out.write(EXCEL_CSV.encode("cp1252"))
    with pytest.raises(DatasetImportError, match="not UTF-8"):
        ws.import_dataset(tmp_path / "x.csv.gz", "x")


# --- chat rows ---------------------------------------------------------------------------------


def test_a_chat_row_whose_assistant_turn_is_a_tool_call_is_skipped_and_counted(ws, tmp_path):
    tool_call = {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
    f = tmp_path / "chat.jsonl"
    f.write_text(
        jsonl(
            [
                {
                    "messages": [
                        {"role": "user", "content": "Weather in Paris?"},
                        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
                        {"role": "tool", "content": "sunny"},
                        {"role": "assistant", "content": "It is sunny."},
                    ]
                },
                {
                    "messages": [
                        {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello!"},
                    ]
                },
            ]
        )
    )
    ds = ws.import_dataset(f, "chat")
    assert pairs(ws, ds) == [("Hi", "Hello!")]
    assert ds.skipped == 1
    assert ds.skipped_reasons == {"the assistant turn has no text (a tool call)": 1}


def test_chat_content_parts_give_their_text_not_their_json(ws, tmp_path):
    f = tmp_path / "parts.jsonl"
    parts = [{"type": "text", "text": "Describe"}, {"type": "text", "text": "this."}]
    f.write_text(
        jsonl(
            [
                {
                    "messages": [
                        {"role": "user", "content": parts},
                        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
                    ]
                },
            ]
        )
    )
    ds = ws.import_dataset(f, "parts")
    assert pairs(ws, ds) == [("Describe\nthis.", "A cat.")]
