// tokenizers/: GPT-NeoX's tokenizer types behind data/tokenizer.ts's Tokenizer interface, each
// reading its files itself (no Python, no network). buildTokenizer() in ../tokenizer.ts picks one.
//
//   char_level.ts       CharLevelTokenizer: UTF-8 bytes (vocab 512, eod 0, pad 1)
//   hf.ts               HFTokenizer (tokenizer.json) and HFPipeline: added tokens → normalizer →
//                       pre-tokenizer → model → post-processor; decoders back; buildModel
//   gpt2.ts             GPT2BPETokenizer (vocab.json + merges.txt), HFGPT2Tokenizer (a directory as
//                       GPT2TokenizerFast.from_pretrained takes it, plus <|padding|>)
//   sentencepiece.ts    SPMTokenizer: .model protobuf, SentencePiece's normalizer, BPE / Unigram /
//                       word / char models, byte fallback, its decoding rules
//   tiktoken.ts         TiktokenTokenizer: tiktoken encodings by name, ranks from js-tiktoken
//   added_tokens.ts     AddedVocabulary: tokenizer.json added tokens (leftmost-longest, lstrip/rstrip,
//                       single_word, normalized or raw)
//   normalizers.ts      NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents, Replace, Prepend,
//                       BertNormalizer, Precompiled, Nmt, ByteLevel, Sequence
//   pre_tokenizers.ts   ByteLevel, Split (5 behaviours), Whitespace(Split), BertPreTokenizer,
//                       Punctuation, Digits, Metaspace, CharDelimiterSplit, Sequence
//   bpe.ts              BPEModel (HF merge order, byte_fallback, unk fusing, affixes), merges.txt
//   wordpiece.ts        WordPieceModel, WordLevelModel
//   unigram.ts          Viterbi best path over a byte trie (shared with SentencePiece), UnigramModel
//   decoders.ts         ByteLevel, Metaspace, WordPiece, BPEDecoder, ByteFallback, Fuse, Strip,
//                       Replace, CTC, Sequence
//   post_processors.ts  TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence
//   precompiled.ts      SentencePiece precompiled_charsmap (darts-clone double-array trie)
//   protobuf.ts         minimal protobuf wire reader
//   unicode.ts          UTF-8, GPT-2 byte alphabet, Unicode classes, Oniguruma/Rust regex → JS
//   files.ts            reading files with errors that name them

export { CharLevelTokenizer } from './char_level.js';
export { buildModel, HFPipeline, HFTokenizer } from './hf.js';
export { GPT2BPETokenizer, gpt2Json, HFGPT2Tokenizer } from './gpt2.js';
export { parseSentencePieceModel, SPMTokenizer, type SentencePieceModel, type SpmPiece } from './sentencepiece.js';
export { loadTiktokenRanks, TIKTOKEN_ENCODINGS, TiktokenTokenizer } from './tiktoken.js';
export { translateRegex } from './unicode.js';
