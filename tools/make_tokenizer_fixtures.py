#!/usr/bin/env python3
"""Tokenizer fixtures for NeoX.ts (tests/fixtures/tokenizers/), made once with the reference
libraries and committed, so tests check our token ids against the real thing.

Usage: python3 tools/make_tokenizer_fixtures.py OUT [--tiktoken-ranks DIR]
As run on the GPU host (from the repo root, carrying node_modules/js-tiktoken/dist/ranks):
  python3 tools/make_tokenizer_fixtures.py $OUT/tok --tiktoken-ranks node_modules/js-tiktoken/dist/ranks

Needs `tokenizers`, `sentencepiece`, `transformers` (GPT2Tokenizer) and `tiktoken`; no network.
Every tokenizer is built or trained here from a few KB of text written in this file:

  bytelevel/      HF byte-level BPE in GPT-NeoX-20B's layout (NFC, ByteLevel, legacy "a b" merges,
                  <|endoftext|>=0 <|padding|>=1, whitespace-run added tokens, an lstrip/rstrip
                  special token, a single_word token); also vocab.json + merges.txt from its model
  gpt2_dir/       vocab.json + merges.txt (no <|padding|>), for HFGPT2Tokenizer (pad appended)
  spbpe/          HF BPE with byte_fallback in Llama-2's layout (Prepend/Replace normalizer,
                  ByteFallback/Fuse/Strip decoder, <s> template)
  wordpiece/      HF WordPiece in BERT's layout (BertNormalizer, BertPreTokenizer, [CLS] $A [SEP])
  unigram/        HF Unigram with NFKC and Metaspace
  bpe_affixes/    HF BPE with continuing_subword_prefix "##" and end_of_word_suffix "</w>"
  wordlevel/      HF WordLevel behind every Split behaviour, Punctuation, Digits, CharDelimiterSplit
  t5_precompiled/ HF Unigram converted from spm/spm_unigram.model: Precompiled charsmap normalizer
  spm/            SentencePiece .model files: BPE (byte_fallback, identity rules, Llama-like),
                  Unigram (custom normalization rules TSV -> small charsmap, user-defined
                  <|endoftext|>, pad id 3), char (whitespace as suffix) and word models
Variants are a patch over a base tokenizer.json ({"base": ..., "patch": {...}}): top-level keys
replace the base's, except "model", whose keys are merged into the base model. The tests apply
the same patch. Variants: llama3 (Split with (?i:...) regex + ByteLevel(use_regex=false),
ignore_merges, template), roberta (add_prefix_space, RobertaProcessing), metaspace_first
(Mistral/Llama new layout), bert_cased (BertProcessing, no lowercasing), wordlevel_invert.

Each fixture folder gets expected.json: tokenizer_type / vocab_file / merge_file as GPT-NeoX
takes them (paths relative to tests/fixtures/tokenizers), vocab_size, eod_id and pad_id as
GPT-NeoX's tokenizer classes compute them (null where GPT-NeoX has none), and one line per test
text: ids (reference encode), decoded (reference decode; for HF also decoded_keep_special where
skip_special_tokens=False differs), or the error the reference raised.

tiktoken/: with --tiktoken-ranks DIR (js-tiktoken's dist/ranks, *.cjs), builds tiktoken
Encodings from those ranks and tiktoken's own pattern/special tokens (tiktoken_ext.openai_public),
records whether the ranks hash to OpenAI's published sha256, and the ids of each text.

probes.json: which code points `\\s` matches in the `regex` module (GPT2Tokenizer) and in
Oniguruma (HF Split/ByteLevel), so the TypeScript regex translation can be checked.

Everything is packed into OUT/fixtures.tar (the device runner returns few files) plus
OUT/summary.json and OUT/log.txt. Unpack with: tar -xf fixtures.tar -C tests/fixtures/tokenizers
"""
import base64
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import traceback

OUT = sys.argv[1] if len(sys.argv) > 1 else "out"
RANKS_DIR = None
if "--tiktoken-ranks" in sys.argv:
    RANKS_DIR = sys.argv[sys.argv.index("--tiktoken-ranks") + 1]
os.makedirs(OUT, exist_ok=True)
STAGE = os.path.join(OUT, "stage")
if os.path.exists(STAGE):
    shutil.rmtree(STAGE)
os.makedirs(STAGE)
LOG = open(os.path.join(OUT, "log.txt"), "w", encoding="utf-8")
SUMMARY = {"versions": {}, "sections": {}}


def log(*args):
    msg = " ".join(str(a) for a in args)
    print(msg, flush=True)
    LOG.write(msg + "\n")
    LOG.flush()


def section(name):
    def wrap(fn):
        try:
            fn()
            SUMMARY["sections"][name] = "ok"
            log(f"[ok] {name}")
        except Exception as e:  # keep going: one failing family must not lose the others
            SUMMARY["sections"][name] = f"error: {type(e).__name__}: {e}"
            log(f"[error] {name}: {type(e).__name__}: {e}")
            log(traceback.format_exc())
        return fn
    return wrap


def slim_case(case):
    """What a test needs of one case: text, ids, decoded; the rest only where it says more."""
    out = {"text": case["text"]}
    for key in ("ids", "decoded", "error"):
        if key in case:
            out[key] = case[key]
    if "decoded_keep_special" in case and case["decoded_keep_special"] != case.get("decoded"):
        out["decoded_keep_special"] = case["decoded_keep_special"]
    if "ids_all_special" in case and case["ids_all_special"] != case.get("ids"):
        out["ids_all_special"] = case["ids_all_special"]
    return out


def dump_expected(obj):
    """expected.json: header fields one per line, then one line per case (small and diffable)."""
    head = {k: v for k, v in obj.items() if k != "cases"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False, separators=(',', ':'))},")
    cases = [json.dumps(slim_case(c), ensure_ascii=False, separators=(",", ":")) for c in obj["cases"]]
    lines.append(' "cases": [\n  ' + ",\n  ".join(cases) + "\n ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_json(rel, obj, compact=False):
    path = os.path.join(STAGE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        if rel.endswith("expected.json"):
            f.write(dump_expected(obj))
        elif compact:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        else:
            json.dump(obj, f, ensure_ascii=False, indent=1)
    return path


for mod in ["tokenizers", "sentencepiece", "tiktoken", "transformers", "regex"]:
    try:
        SUMMARY["versions"][mod] = __import__(mod).__version__
    except Exception as e:
        SUMMARY["versions"][mod] = f"unavailable: {e}"
SUMMARY["versions"]["python"] = sys.version
log("versions:", json.dumps(SUMMARY["versions"]))

# ---------------------------------------------------------------------------------------------
# Text

CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away into the forest.
GPT-NeoX is a library for training large language models on many GPUs at once.
It's not that they'll say no, it's that we've never asked. I'm sure you'd agree, wouldn't you?
Tokenizers split text into pieces: words, subwords, characters or bytes. Each piece gets an id.
Byte-level BPE never needs an unknown token, because every byte has a token of its own.
WordPiece marks word continuations with ##, and Unigram keeps the most likely segmentation.
SentencePiece treats the input as a raw stream and replaces spaces with the meta symbol.
Numbers appear everywhere: 0, 1, 2, 3, 42, 100, 2024, 3.14159, 1,000,000 and -273.15 degrees.
Prices were $19.99 and EUR 5,50; the meeting is at 10:30 on 2024-05-17 in room 101.
def train(model, data, steps=1000):
    for step in range(steps):
        loss = model(data[step % len(data)])
        loss.backward()
    return model
function add(a, b) { return a + b; } // JavaScript
SELECT name, count(*) FROM users WHERE age > 30 GROUP BY name ORDER BY 2 DESC;
if (x != nil && y >= 0) { z = x ** 2 + y / 3 - 4 % 5; }
Visit https://github.com/EleutherAI/gpt-neox or write to team@example.org for questions.
Café, naïve, résumé, façade, coöperate, jalapeño, Zürich, Straße, smörgåsbord, crème brûlée.
Le renard brun saute par-dessus le chien paresseux. ¿Dónde está la biblioteca? ¡Aquí está!
Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München und Köln.
Ο γρήγορος καφέ αλεπού πηδάει πάνω από το τεμπέλικο σκυλί. Σίσυφος και Οδυσσέας.
Быстрая коричневая лиса прыгает через ленивую собаку. Привет, мир!
敏捷的棕色狐狸跳过了懒狗。我们正在训练一个大型语言模型。中文文本测试。
素早い茶色の狐がのろまな犬を飛び越える。日本語のテキストです。東京と大阪。
빠른 갈색 여우가 게으른 개를 뛰어넘는다. 한국어 텍스트입니다.
الثعلب البني السريع يقفز فوق الكلب الكسول. مرحبا بالعالم.
Emoji are text too: 😀 😃 🦜 🚀 🎉 👍 👍🏽 ❤️ 👩‍👩‍👧 🇯🇵 🏳️‍🌈 and ✨ sparkles ✨.
Whitespace comes in many forms:  two spaces,   three spaces,	a tab, and
newlines, plus trailing spaces   
and lines that are indented:
        eight spaces of indentation here
    four spaces here
Mixed CASE words, ALLCAPS, lowercase, CamelCase, snake_case, kebab-case and SCREAMING_CASE.
Quotes "double" and 'single', brackets [square] {curly} (round) <angle>, and punctuation!?...
Contractions: don't, can't, won't, shouldn't, I've, you're, he's, she'd, they'll, we'd, it'll.
The end of a document is marked with a special token so that documents can be packed together.
A banana, two bananas, the banana bread; bananas are yellow and a banana is a fruit.
Training a language model means predicting the next token again and again, for billions of tokens.
The data pipeline reads documents, tokenizes them, appends an end-of-document token, and writes
the token ids into a binary file with an index, so that training can sample windows quickly.
Samples are shuffled with a fixed seed, so that two runs with the same configuration see the same
batches in the same order, which makes experiments reproducible and bugs easier to find.
class Tokenizer:
    def __init__(self, vocab_file, merge_file=None):
        self.vocab = load(vocab_file)
    def encode(self, text: str) -> list[int]:
        return [self.vocab[piece] for piece in self.split(text)]
const ids = tokenizer.encode("hello world"); console.log(ids.length, ids[0] ?? -1);
for (let i = 0; i < n; i++) { total += weights[i] * values[i]; } // accumulate
Mixed precision keeps master weights in fp32 while computing in bf16 or fp16 with loss scaling.
Pipeline parallelism splits the layers into stages; tensor parallelism splits each matrix multiply.
The learning rate warms up linearly, then decays with a cosine schedule down to a minimum value.
Evaluation runs every few hundred steps and reports the loss and the perplexity on held-out data.
"Where is the checkpoint?" she asked. "In the runs directory," he said, "next to the logs."
Un modèle de langue apprend à prédire le mot suivant. Ein Sprachmodell lernt das nächste Wort.
La tokenización divide el texto en piezas. A tokenização divide o texto em pedaços.
语言模型学习预测下一个词。数据被切分成词元。日本語の文章を単語に分割します。
"""

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    "multiple     spaces\tand\ttabs\nand\nnewlines\r\nCRLF",
    "I'm sure they'll say DON'T, won't they? It's John's. WE'VE SEEN IT'S",
    "def f(x):\n    return x ** 2  # square\n",
    "Numbers: 0 7 42 1234567 3.14159 -2,000,000 1e-9 ٣٤ ½ Ⅻ",
    "Email me at someone@example.com or visit https://example.org/path?q=1&r=2",
    "日本語のテキストと中文的文本。",
    "한국어 텍스트, العربية, Ελληνικά, русский текст",
    "Emoji: 🦜🚀👩‍👩‍👧 👍🏽 🇯🇵 ❤️",
    "Combining: e\u0301 a\u0308 n\u0303 \u2014 precomposed: é ä ñ",
    "\u00c5 vs A\u030a; \ufb01 \ufb02 ligatures; \uff21\uff22\uff23\uff11\uff12\uff13 fullwidth",
    "Café naïve résumé coöperate façade",
    "ΣΊΣΥΦΟΣ σίσυφος İstanbul Straße",
    "control \x00\x01\x07\x1b\x1c\x1f\x7f chars",
    "spaces: nbsp\u00a0em\u2003ideographic\u3000nel\u0085zwsp\u200bbom\ufeffend\u2028ls",
    " ",
    "",
    "\n\n\n",
    "a" + " " * 40 + "b",
    "\t\t  \n  \t",
    "a" * 120,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "before<|endoftext|>after",
    "<|padding|> and <s> and </s> and [CLS] [SEP] [MASK] <unk>",
    "MiXeD CaSe WoRdS and ALLCAPS and lowercase",
    "Punctuation!!! ...?? (parens) [brackets] {braces} \"quotes\" 'single' `back`",
    "Tokenizers: byte-level BPE, WordPiece, Unigram & SentencePiece.",
    "x=1;y=2;z=x+y*3/4-5%6^7|8&9~0 a-b-c axbxc",
    "  <|mask|>  masked  <|mask|>x",
    "banana bananas abanana banana. Banana",
    "\u2160 \u2160\u2161 \u2026 \u201cquoted\u201d tab\there \u200b",
    "\u200d\u200c\u2060 joiners and \U0001F3F3\ufe0f\u200d\U0001F308 flag \U00010348 \U0001D11E",
    "1234567890 12 345 6789 00",
    CORPUS[:600],
]


CORPUS_PATH = os.path.join(tempfile.mkdtemp(), "corpus.txt")
with open(CORPUS_PATH, "w", encoding="utf-8") as f:
    f.write(CORPUS)
LINES = [l for l in CORPUS.split("\n") if l.strip()]
# Training sees the corpus a few times plus the test texts' ordinary words, so merges are rich.
TRAIN = LINES * 3

# ---------------------------------------------------------------------------------------------
# Hugging Face tokenizers


def hf_cases(tok, with_tokens=True):
    cases = []
    for t in TEXTS:
        case = {"text": t}
        try:
            enc = tok.encode(t)
            case["ids"] = enc.ids
            if with_tokens:
                case["tokens"] = enc.tokens
            case["decoded"] = tok.decode(enc.ids)
            case["decoded_keep_special"] = tok.decode(enc.ids, skip_special_tokens=False)
        except Exception as e:
            case["error"] = f"{type(e).__name__}: {e}"
        cases.append(case)
    return cases


def hf_expected(name, tok, vocab_file, extra=None):
    from tokenizers import Tokenizer  # noqa: F401
    exp = {
        "name": name,
        "tokenizer_type": "HFTokenizer",
        "vocab_file": vocab_file,
        "merge_file": None,
        "reference": "tokenizers " + SUMMARY["versions"]["tokenizers"],
        "vocab_size": tok.get_vocab_size(),
        "vocab_size_without_added": tok.get_vocab_size(with_added_tokens=False),
        # GPT-NeoX HFTokenizer: token_to_id of these exact strings (None when absent)
        "eod_id": tok.token_to_id("<|endoftext|>"),
        "pad_id": tok.token_to_id("<|padding|>"),
        "cases": hf_cases(tok),
    }
    if extra:
        exp.update(extra)
    return exp


def apply_patch(base, patch):
    out = dict(base)
    for k, v in patch.items():
        if k == "model":
            m = dict(out["model"])
            m.update(v)
            out["model"] = m
        else:
            out[k] = v
    return out


def load_hf(obj):
    from tokenizers import Tokenizer
    return Tokenizer.from_str(json.dumps(obj, ensure_ascii=False))


def train_hf(skeleton, trainer):
    """Load a tokenizer.json dict with an empty model, train it on TRAIN, return the saved dict."""
    tok = load_hf(skeleton)
    tok.train_from_iterator(TRAIN, trainer=trainer)
    return json.loads(tok.to_str())


def template(single, special):
    """TemplateProcessing JSON. single: list of token names or "$A"; special: {name: id}."""
    seq = []
    for piece in single:
        if piece == "$A":
            seq.append({"Sequence": {"id": "A", "type_id": 0}})
        else:
            seq.append({"SpecialToken": {"id": piece, "type_id": 0}})
    pair = seq + [{"Sequence": {"id": "B", "type_id": 1}}]
    return {
        "type": "TemplateProcessing",
        "single": seq,
        "pair": pair,
        "special_tokens": {k: {"id": k, "ids": [v], "tokens": [k]} for k, v in special.items()},
    }


def added(content, id_, special, normalized=None, lstrip=False, rstrip=False, single_word=False):
    return {
        "id": id_, "content": content, "single_word": single_word, "lstrip": lstrip,
        "rstrip": rstrip, "normalized": (not special) if normalized is None else normalized,
        "special": special,
    }


def empty_bpe(**kw):
    m = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
         "vocab": {}, "merges": []}
    m.update(kw)
    return m


def skeleton(model, normalizer=None, pre_tokenizer=None, post_processor=None, decoder=None):
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "model": model,
            "post_processor": post_processor, "decoder": decoder}


BYTELEVEL_PRE = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
BASES = {}


@section("bytelevel")
def _bytelevel():
    from tokenizers import trainers, pre_tokenizers
    sk = skeleton(empty_bpe(), {"type": "NFC"}, BYTELEVEL_PRE,
                  {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
                  {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True})
    trainer = trainers.BpeTrainer(vocab_size=560, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    obj = train_hf(sk, trainer)
    model = obj["model"]
    # GPT-NeoX-20B's file has legacy "a b" merges; byte-level tokens never contain a space.
    model["merges"] = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    n = len(model["vocab"])
    obj["added_tokens"] = [
        added("<|endoftext|>", 0, True), added("<|padding|>", 1, True),
        added("        ", n, False), added("    ", n + 1, False), added("  ", n + 2, False),
        added("<|mask|>", n + 3, True, lstrip=True, rstrip=True),
        added("banana", n + 4, False, single_word=True),
    ]
    BASES["bytelevel"] = obj
    write_json("bytelevel/tokenizer.json", obj, compact=True)
    tok = load_hf(obj)
    write_json("bytelevel/expected.json", hf_expected("bytelevel", tok, "bytelevel/tokenizer.json"))
    # vocab.json + merges.txt of the model alone, as tokenizers' BPE.save writes them
    vocab = model["vocab"]
    write_json("bytelevel/vocab.json", vocab, compact=True)
    with open(os.path.join(STAGE, "bytelevel/merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(model["merges"]) + "\n")


@section("bytelevel_variants")
def _bytelevel_variants():
    base = BASES["bytelevel"]
    eot = 0
    variants = {
        "llama3": {
            "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
            "model": {"ignore_merges": True},
            "post_processor": {"type": "Sequence", "processors": [
                {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
                template(["<|endoftext|>", "$A"], {"<|endoftext|>": eot})]},
        },
        "roberta": {
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", 0], "cls": ["<|padding|>", 1],
                               "trim_offsets": True, "add_prefix_space": True},
        },
    }
    for name, patch in variants.items():
        try:
            tok = load_hf(apply_patch(base, patch))
            write_json(f"{name}/expected.json", hf_expected(
                name, tok, f"{name}/tokenizer.json",
                {"base": "bytelevel/tokenizer.json", "patch": patch}))
            SUMMARY["sections"][f"variant {name}"] = "ok"
        except Exception as e:
            SUMMARY["sections"][f"variant {name}"] = f"error: {type(e).__name__}: {e}"
            log(traceback.format_exc())


@section("gpt2")
def _gpt2():
    from transformers import GPT2Tokenizer, GPT2TokenizerFast
    d = os.path.join(STAGE, "bytelevel")
    try:  # exactly as GPT-NeoX's _GPT2BPETokenizer builds it
        slow = GPT2Tokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"),
                             errors="replace", special_tokens=[], max_len=None)
        how = "GPT-NeoX kwargs"
    except Exception as e:
        log(f"GPT2Tokenizer with GPT-NeoX kwargs failed ({e}); plain construction")
        slow = GPT2Tokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"), errors="replace")
        how = "plain"
    slow_vocab = slow.encoder if hasattr(slow, "encoder") else slow.get_vocab()
    cases = []
    for t in TEXTS:
        case = {"text": t}
        try:
            ids = slow.encode(t)
            case["ids"] = ids
            case["tokens"] = slow.convert_ids_to_tokens(ids)
            case["decoded"] = slow.decode(ids)
        except Exception as e:
            case["error"] = f"{type(e).__name__}: {e}"
        cases.append(case)
    write_json("gpt2bpe/expected.json", {
        "name": "gpt2bpe", "tokenizer_type": "GPT2BPETokenizer",
        "vocab_file": "bytelevel/vocab.json", "merge_file": "bytelevel/merges.txt",
        "reference": "transformers GPT2Tokenizer " + SUMMARY["versions"]["transformers"],
        "clean_up_tokenization_spaces": getattr(slow, "clean_up_tokenization_spaces", None),
        "construction": how, "class": type(slow).__name__,
        "vocab_size": len(slow_vocab), "eod_id": slow_vocab["<|endoftext|>"], "pad_id": None,
        "cases": cases})

    # HFGPT2Tokenizer: a directory with vocab.json (no <|padding|>) + merges.txt
    vocab = json.load(open(os.path.join(d, "vocab.json"), encoding="utf-8"))
    vocab = {("<|unused|>" if k == "<|padding|>" else k): v for k, v in vocab.items()}
    write_json("gpt2_dir/vocab.json", vocab, compact=True)
    shutil.copy(os.path.join(d, "merges.txt"), os.path.join(STAGE, "gpt2_dir/merges.txt"))
    fast = GPT2TokenizerFast.from_pretrained(os.path.join(STAGE, "gpt2_dir"))
    fast.add_special_tokens({"pad_token": "<|padding|>"})
    cases = []
    for t in TEXTS:
        case = {"text": t}
        try:
            ids = fast.encode(t)
            case["ids"] = ids
            case["tokens"] = fast.convert_ids_to_tokens(ids)
            case["decoded"] = fast.decode(ids)
        except Exception as e:
            case["error"] = f"{type(e).__name__}: {e}"
        cases.append(case)
    write_json("hfgpt2/expected.json", {
        "name": "hfgpt2", "tokenizer_type": "HFGPT2Tokenizer", "vocab_file": "gpt2_dir", "merge_file": None,
        "reference": "transformers GPT2TokenizerFast " + SUMMARY["versions"]["transformers"],
        "clean_up_tokenization_spaces": getattr(fast, "clean_up_tokenization_spaces", None),
        "vocab_size": len(fast), "eod_id": fast.eos_token_id, "pad_id": fast.pad_token_id,
        "cases": cases})


@section("spbpe")
def _spbpe():
    from tokenizers import trainers
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    meta_train = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True,
                  "add_prefix_space": True}
    sk = skeleton(empty_bpe(unk_token="<unk>", byte_fallback=True, fuse_unk=True), None, meta_train)
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=2, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens)
    obj = train_hf(sk, trainer)
    obj["model"].update({"unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True})
    obj["added_tokens"] = [added("<unk>", 0, True), added("<s>", 1, True), added("</s>", 2, True)]
    obj["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    obj["pre_tokenizer"] = None
    obj["post_processor"] = template(["<s>", "$A"], {"<s>": 1})
    obj["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    BASES["spbpe"] = obj
    write_json("spbpe/tokenizer.json", obj, compact=True)
    tok = load_hf(obj)
    write_json("spbpe/expected.json", hf_expected("spbpe", tok, "spbpe/tokenizer.json"))
    patch = {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"},
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}]},
    }
    tok = load_hf(apply_patch(obj, patch))
    write_json("metaspace_first/expected.json", hf_expected(
        "metaspace_first", tok, "metaspace_first/tokenizer.json",
        {"base": "spbpe/tokenizer.json", "patch": patch}))


@section("wordpiece")
def _wordpiece():
    from tokenizers import trainers
    bert_norm = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                 "strip_accents": None, "lowercase": True}
    sk = skeleton({"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                   "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0}},
                  bert_norm, {"type": "BertPreTokenizer"}, None,
                  {"type": "WordPiece", "prefix": "##", "cleanup": True})
    trainer = trainers.WordPieceTrainer(vocab_size=480, min_frequency=1, show_progress=False,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    obj = train_hf(sk, trainer)
    v = obj["model"]["vocab"]
    obj["post_processor"] = template(["[CLS]", "$A", "[SEP]"], {"[CLS]": v["[CLS]"], "[SEP]": v["[SEP]"]})
    obj["decoder"] = {"type": "WordPiece", "prefix": "##", "cleanup": True}
    write_json("wordpiece/tokenizer.json", obj, compact=True)
    tok = load_hf(obj)
    write_json("wordpiece/expected.json", hf_expected("wordpiece", tok, "wordpiece/tokenizer.json"))
    patch = {
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": False, "lowercase": False},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", v["[SEP]"]], "cls": ["[CLS]", v["[CLS]"]]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": False},
    }
    tok = load_hf(apply_patch(obj, patch))
    write_json("bert_cased/expected.json", hf_expected(
        "bert_cased", tok, "bert_cased/tokenizer.json", {"base": "wordpiece/tokenizer.json", "patch": patch}))


@section("unigram")
def _unigram():
    from tokenizers import trainers
    meta = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True,
            "add_prefix_space": True}
    sk = skeleton({"type": "Unigram", "unk_id": None, "vocab": []}, {"type": "NFKC"}, meta, None, meta)
    trainer = trainers.UnigramTrainer(vocab_size=420, show_progress=False, unk_token="<unk>",
                                      special_tokens=["<unk>", "<|endoftext|>", "<|padding|>"])
    obj = train_hf(sk, trainer)
    meta2 = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    obj["pre_tokenizer"] = meta2
    obj["decoder"] = meta2
    write_json("unigram/tokenizer.json", obj, compact=True)
    tok = load_hf(obj)
    write_json("unigram/expected.json", hf_expected("unigram", tok, "unigram/tokenizer.json"))


@section("bpe_affixes")
def _bpe_affixes():
    from tokenizers import trainers
    sk = skeleton(empty_bpe(unk_token="<unk>", continuing_subword_prefix="##", end_of_word_suffix="</w>"),
                  {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]},
                  {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"},
                                                         {"type": "Digits", "individual_digits": True}]},
                  None, {"type": "BPEDecoder", "suffix": "</w>"})
    trainer = trainers.BpeTrainer(vocab_size=460, min_frequency=2, show_progress=False,
                                  special_tokens=["<unk>", "<|endoftext|>"],
                                  continuing_subword_prefix="##", end_of_word_suffix="</w>")
    obj = train_hf(sk, trainer)
    obj["model"].update({"unk_token": "<unk>", "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>"})
    write_json("bpe_affixes/tokenizer.json", obj, compact=True)
    tok = load_hf(obj)
    write_json("bpe_affixes/expected.json", hf_expected("bpe_affixes", tok, "bpe_affixes/tokenizer.json"))


@section("wordlevel")
def _wordlevel():
    from tokenizers import trainers
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"},
        {"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"String": "-"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Punctuation", "behavior": "Contiguous"},
        {"type": "Split", "pattern": {"String": "'"}, "behavior": "Removed", "invert": False},
        {"type": "CharDelimiterSplit", "delimiter": "x"}]}
    norm = {"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"},
        {"type": "Replace", "pattern": {"Regex": "[0-9]"}, "content": "0"},
        {"type": "Strip", "strip_left": True, "strip_right": True}]}
    sk = skeleton({"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"}, norm, pre)
    trainer = trainers.WordLevelTrainer(vocab_size=400, min_frequency=1, show_progress=False,
                                        special_tokens=["<unk>", "<|endoftext|>"])
    obj = train_hf(sk, trainer)
    write_json("wordlevel/tokenizer.json", obj, compact=True)
    tok = load_hf(obj)
    write_json("wordlevel/expected.json", hf_expected("wordlevel", tok, "wordlevel/tokenizer.json"))
    patch = {
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Whitespace"},
            {"type": "Split", "pattern": {"Regex": "[aeiou]+"}, "behavior": "Isolated", "invert": True},
            {"type": "Digits", "individual_digits": False}]},
    }
    tok = load_hf(apply_patch(obj, patch))
    write_json("wordlevel_invert/expected.json", hf_expected(
        "wordlevel_invert", tok, "wordlevel_invert/tokenizer.json",
        {"base": "wordlevel/tokenizer.json", "patch": patch}))


# ---------------------------------------------------------------------------------------------
# SentencePiece

NORM_RULES = [  # (source code points, target code points); an empty target deletes
    ([0xFB01], [0x66, 0x69]), ([0xFB02], [0x66, 0x6C]),
    ([0x3000], [0x20]), ([0x00A0], [0x20]), ([0x0009], [0x20]), ([0x2003], [0x20]),
    ([0x0065, 0x0301], [0x00E9]), ([0x0041, 0x030A], [0x00C5]),
    ([0x2026], [0x2E, 0x2E, 0x2E]), ([0x201C], [0x22]), ([0x201D], [0x22]),
    ([0x2160], [0x49]), ([0x2160, 0x2161], [0x49, 0x49, 0x49]), ([0x2161], [0x49, 0x49]),
    ([0x200B], []),
] + [([0xFF21 + i], [0x41 + i]) for i in range(26)] + [([0xFF10 + i], [0x30 + i]) for i in range(10)]


def read_varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def proto_fields(buf):
    """Yield (field, wire type, value) of one protobuf message (value: int or bytes)."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = read_varint(buf, pos)
        elif wt == 1:
            v, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            n, pos = read_varint(buf, pos)
            v, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            v, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield field, wt, v


def spm_expected(name, path_rel, sp):
    cases = []
    for t in TEXTS:
        case = {"text": t}
        try:
            ids = sp.encode(t)
            case["ids"] = ids
            case["tokens"] = [sp.id_to_piece(i) for i in ids]
            case["decoded"] = sp.decode(ids)
        except Exception as e:
            case["error"] = f"{type(e).__name__}: {e}"
        cases.append(case)
    return {
        "name": name, "tokenizer_type": "SPMTokenizer", "vocab_file": path_rel, "merge_file": None,
        "reference": "sentencepiece " + SUMMARY["versions"]["sentencepiece"],
        "vocab_size": sp.get_piece_size(),
        # GPT-NeoX SentencePieceTokenizer: eod = piece_to_id("<|endoftext|>") (unk id when absent)
        "eod_id": sp.piece_to_id("<|endoftext|>"), "pad_id": None,
        "spm_ids": {"unk": sp.unk_id(), "bos": sp.bos_id(), "eos": sp.eos_id(), "pad": sp.pad_id()},
        "cases": cases,
    }


SPM_MODELS = {
    "spm_bpe": dict(model_type="bpe", vocab_size=700, byte_fallback=True, normalization_rule_name="identity",
                    add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=True,
                    allow_whitespace_only_pieces=True, character_coverage=1.0),
    "spm_unigram": dict(model_type="unigram", vocab_size=420, character_coverage=0.98,
                        user_defined_symbols=["<|endoftext|>"], pad_id=3),
    "spm_char": dict(model_type="char", vocab_size=300, normalization_rule_name="identity",
                     treat_whitespace_as_suffix=True, character_coverage=0.98),
    "spm_word": dict(model_type="word", vocab_size=200, normalization_rule_name="identity"),
}


@section("sentencepiece")
def _sentencepiece():
    import sentencepiece as spm
    tmp = tempfile.mkdtemp()
    rules_path = os.path.join(tmp, "rules.tsv")
    with open(rules_path, "w", encoding="utf-8") as f:
        for src, trg in NORM_RULES:
            f.write(" ".join(f"{c:X}" for c in src) + "\t" + " ".join(f"{c:X}" for c in trg) + "\n")
    os.makedirs(os.path.join(STAGE, "spm"), exist_ok=True)
    for name, opts in SPM_MODELS.items():
        try:
            kw = dict(input=CORPUS_PATH, model_prefix=os.path.join(tmp, name), hard_vocab_limit=False,
                      num_threads=4, minloglevel=2)
            kw.update(opts)
            if name == "spm_unigram":
                kw["normalization_rule_tsv"] = rules_path
            try:
                spm.SentencePieceTrainer.train(**kw)
            except Exception as e:
                if name != "spm_unigram":
                    raise
                log(f"{name}: retry without the rules TSV ({e})")
                del kw["normalization_rule_tsv"]
                kw["normalization_rule_name"] = "nmt_nfkc"
                spm.SentencePieceTrainer.train(**kw)
            shutil.copy(os.path.join(tmp, name + ".model"), os.path.join(STAGE, "spm", name + ".model"))
            sp = spm.SentencePieceProcessor(model_file=os.path.join(STAGE, "spm", name + ".model"))
            write_json(f"{name}/expected.json", spm_expected(name, f"spm/{name}.model", sp))
            SUMMARY["sections"][f"spm {name}"] = "ok"
        except Exception as e:
            SUMMARY["sections"][f"spm {name}"] = f"error: {type(e).__name__}: {e}"
            log(traceback.format_exc())


@section("t5_precompiled")
def _t5_precompiled():
    data = open(os.path.join(STAGE, "spm", "spm_unigram.model"), "rb").read()
    pieces, charsmap = [], b""
    for field, _, v in proto_fields(data):
        if field == 1:
            piece = {"piece": "", "score": 0.0, "type": 1}
            for f2, _, v2 in proto_fields(v):
                if f2 == 1:
                    piece["piece"] = v2.decode("utf-8")
                elif f2 == 2:
                    import struct
                    piece["score"] = struct.unpack("<f", v2)[0]
                elif f2 == 3:
                    piece["type"] = v2
            pieces.append(piece)
        elif field == 3:
            for f2, _, v2 in proto_fields(v):
                if f2 == 2:
                    charsmap = v2
    unk_id = next(i for i, p in enumerate(pieces) if p["type"] == 2)
    specials = [(i, p["piece"]) for i, p in enumerate(pieces) if p["type"] in (2, 3)]
    user = [(i, p["piece"]) for i, p in enumerate(pieces) if p["type"] == 4]
    eos = next(i for i, p in enumerate(pieces) if p["piece"] == "</s>")
    meta = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    obj = skeleton(
        {"type": "Unigram", "unk_id": unk_id, "vocab": [[p["piece"], p["score"]] for p in pieces],
         "byte_fallback": False},
        {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        meta, template(["$A", "</s>"], {"</s>": eos}), meta)
    obj["added_tokens"] = ([added(c, i, True) for i, c in specials] +
                           [added(c, i, False, normalized=False) for i, c in user])
    write_json("t5_precompiled/tokenizer.json", obj, compact=True)
    tok = load_hf(obj)
    write_json("t5_precompiled/expected.json",
               hf_expected("t5_precompiled", tok, "t5_precompiled/tokenizer.json",
                           {"charsmap_bytes": len(charsmap)}))


# ---------------------------------------------------------------------------------------------
# tiktoken


def parse_js_ranks(path):
    text = open(path, encoding="utf-8").read().strip()
    text = text[text.index("{"):text.rindex("}") + 1]
    obj = json.loads(text)
    ranks = {}
    for line in obj["bpe_ranks"].split("\n"):
        if not line:
            continue
        fields = line.split(" ")
        offset = int(fields[1])
        for i, tok in enumerate(fields[2:]):
            ranks[base64.b64decode(tok)] = offset + i
    return obj, ranks


@section("tiktoken")
def _tiktoken():
    import tiktoken
    import tiktoken_ext.openai_public as oap
    if not RANKS_DIR:
        raise RuntimeError("no --tiktoken-ranks DIR given")
    for name in ["r50k_base", "p50k_base", "cl100k_base", "o200k_base"]:
        try:
            js, ranks = parse_js_ranks(os.path.join(RANKS_DIR, name + ".cjs"))
            blob = b"".join(base64.b64encode(t) + b" " + str(r).encode() + b"\n"
                            for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))
            seen = {}

            def fake_load(path, expected_hash=None, **_kw):
                seen["path"], seen["expected_hash"] = path, expected_hash
                return ranks
            oap.load_tiktoken_bpe = fake_load
            params = oap.ENCODING_CONSTRUCTORS[name]()
            enc = tiktoken.Encoding(**params)
            cases = []
            for t in TEXTS:
                case = {"text": t}
                try:
                    ids = enc.encode(t)
                    case["ids"] = ids
                    case["decoded"] = enc.decode(ids)
                except Exception as e:
                    case["error"] = f"{type(e).__name__}: {e}"
                try:
                    case["ids_all_special"] = enc.encode(t, allowed_special="all")
                except Exception as e:
                    case["error_all_special"] = f"{type(e).__name__}: {e}"
                cases.append(case)
            write_json(f"tiktoken_{name}/expected.json", {
                "name": f"tiktoken_{name}", "tokenizer_type": "TiktokenTokenizer", "vocab_file": name,
                "merge_file": None, "reference": "tiktoken " + SUMMARY["versions"]["tiktoken"],
                "ranks_sha256": hashlib.sha256(blob).hexdigest(),
                "expected_sha256": seen.get("expected_hash"),
                "ranks_match_published": hashlib.sha256(blob).hexdigest() == seen.get("expected_hash"),
                "pat_str": params["pat_str"], "js_pat_str": js["pat_str"],
                "special_tokens": params["special_tokens"], "js_special_tokens": js["special_tokens"],
                "vocab_size": enc.n_vocab, "eod_id": enc.eot_token, "pad_id": None, "cases": cases})
            SUMMARY["sections"][f"tiktoken {name}"] = "ok"
        except Exception as e:
            SUMMARY["sections"][f"tiktoken {name}"] = f"error: {type(e).__name__}: {e}"
            log(traceback.format_exc())


# ---------------------------------------------------------------------------------------------
# Probes: what `\s` matches in each regex engine


@section("probes")
def _probes():
    import regex
    probes = {}
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    probes["python_regex_s"] = [c for c in cps if regex.match(r"\s", chr(c))]
    try:
        from tokenizers import pre_tokenizers, Regex
        split = pre_tokenizers.Split(Regex(r"\s"), behavior="removed")
        cands = sorted(set(probes["python_regex_s"]) | {0x1C, 0x1D, 0x1E, 0x1F, 0x85, 0xFEFF, 0x180E, 0x200B})
        probes["onig_s"] = [c for c in cands if split.pre_tokenize_str("a" + chr(c) + "b") == [("a", (0, 1)), ("b", (2, 3))]
                            or len(split.pre_tokenize_str("a" + chr(c) + "b")) == 2]
        probes["onig_candidates"] = cands
    except Exception as e:
        probes["onig_error"] = f"{type(e).__name__}: {e}"
    write_json("probes.json", probes, compact=True)


# ---------------------------------------------------------------------------------------------

write_json("texts.json", TEXTS)
sizes = {}
for root, _, files in os.walk(STAGE):
    for fn in files:
        p = os.path.join(root, fn)
        sizes[os.path.relpath(p, STAGE)] = os.path.getsize(p)
SUMMARY["sizes"] = sizes
SUMMARY["total_bytes"] = sum(sizes.values())
with tarfile.open(os.path.join(OUT, "fixtures.tar"), "w") as tar:
    tar.add(STAGE, arcname=".")
shutil.rmtree(STAGE)
with open(os.path.join(OUT, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(SUMMARY, f, indent=1, ensure_ascii=False)
log("total bytes:", SUMMARY["total_bytes"])
log(json.dumps(SUMMARY["sections"], indent=1))
