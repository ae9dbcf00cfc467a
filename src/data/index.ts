// data/: bytes on disk → token ids → batches. GPT-NeoX's data pipeline, bit-compatible on disk and
// in sample order (same seed → same batches as GPT-NeoX).
//
//   indexed_dataset.ts  Megatron mmap .bin/.idx: IndexedDatasetBuilder (streaming, atomic rename),
//                       IndexedDataset (validating reader, reads tokens through a descriptor),
//                       bestTokenDtype (u16 below a 65500 vocabulary, else i32)
//   tokenizer.ts        Tokenizer interface, buildTokenizer(config) for GPT-NeoX tokenizer_type
//                       names; tokenizers/ holds HF tokenizer.json, GPT-2 BPE, SentencePiece,
//                       tiktoken and CharLevel
//   preprocess.ts       `neox preprocess`: .jsonl(.zst/.gz)/.parquet/text (globs, directories) →
//                       {prefix}_{key}_document .bin/.idx, worker threads (preprocess_worker.ts),
//                       --mask-before-token label files
//   mt19937.ts          numpy's legacy RandomState (MT19937 seeding, random_interval, shuffle)
//   gpt2_dataset.ts     GPT2Dataset: doc/sample/shuffle index maps as GPT-NeoX builds them, cached
//                       as .npy under GPT-NeoX's names; splitDocuments ("969,30,1"); .npy reader/writer
//   blendable.ts        weighted blending of several datasets, exactly GPT-NeoX's order
//   loader.ts           buildDatasets(config) → train/valid/test (split or blended paths, epochs,
//                       label files); BatchIterator: batch k → tokens, labels, loss mask for one rank
//   inspect.ts, merge.ts  `neox data inspect | count | merge`
//   prepare_data.ts     `neox prepare-data NAME`: GPT-NeoX's corpora, resumable download, preprocess

export {
  bestTokenDtype, DTYPE_CODES, encodeIndexHeader, IndexedDataset, IndexedDatasetBuilder, indexPaths,
  type TokenDType,
} from './indexed_dataset.js';
export {
  buildTokenizer, CharLevelTokenizer, TOKENIZER_TYPES, type Tokenizer, type TokenizerConfig, type TokenizerType,
} from './tokenizer.js';
export {
  expandInputs, globFiles, inProcessEncoder, parsePreprocessArgs, preprocess, PREPROCESS_USAGE, runPreprocessCli,
  type DocumentEncoder, type PreprocessOptions, type PreprocessOutput, type PreprocessStats, type RawDocument,
} from './preprocess.js';
export { RandomState, type ShuffleTarget } from './mt19937.js';
export {
  buildDocIdx, buildIndexMappings, buildSampleIdx, buildShuffleIdx, GPT2Dataset, indexMapPaths, numEpochs,
  numTokens, readNpy, splitDocuments, writeNpy,
  type GPT2DatasetOptions, type IndexArray, type IndexMapPaths, type IndexMappingOptions, type IndexMappings,
  type NpyArray, type SampleDataset,
} from './gpt2_dataset.js';
export {
  BatchIterator, buildDatasets, numSamplesPerSplit,
  type Batch, type BatchIteratorOptions, type BuildDatasetsOptions, type DataConfig, type Datasets,
} from './loader.js';
export {
  BlendableDataset, buildBlendingIndex, normalizeWeights, numpySum, weightsByNumDocs, type BlendingIndex,
} from './blendable.js';
export { labelPrefixFor } from './loader.js';
export { LABEL_PAD } from './gpt2_dataset.js';
export { inputFormat, maskBeforeToken, parseMaskTokens, readDocuments, workerPoolEncoder, type InputFormat } from './preprocess.js';
export { countTokens, formatSummary, inspectDataset } from './inspect.js';
export { mergeDatasets, mergeInputs } from './merge.js';
export { CORPORA, downloadFile, extractArchive, NoNetworkError, prepareData } from './prepare_data.js';
export * from './tokenizers/index.js';
