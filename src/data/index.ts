// data/: bytes on disk → token ids → batches. GPT-NeoX's data pipeline, bit-compatible on disk and
// in sample order (same seed → same batches as GPT-NeoX).
//
//   indexed_dataset.ts  Megatron mmap .bin/.idx: IndexedDatasetBuilder (streaming, atomic rename),
//                       IndexedDataset (validating reader, reads tokens through a descriptor),
//                       bestTokenDtype (u16 below a 65500 vocabulary, else i32)
//   tokenizer.ts        Tokenizer interface, buildTokenizer(config) for GPT-NeoX tokenizer_type
//                       names; CharLevelTokenizer now, HF/GPT-2 BPE/SentencePiece/tiktoken later
//   preprocess.ts       `neox preprocess`: .jsonl/.txt (globs, directories) → {prefix}_{key}_document
//                       .bin/.idx; parsePreprocessArgs, runPreprocessCli; DocumentEncoder is the
//                       worker-pool seam; .zst/.parquet inputs slot into readDocuments
//   mt19937.ts          numpy's legacy RandomState (MT19937 seeding, random_interval, shuffle)
//   gpt2_dataset.ts     GPT2Dataset: doc/sample/shuffle index maps as GPT-NeoX builds them, cached
//                       as .npy under GPT-NeoX's names; splitDocuments ("969,30,1"); .npy reader/writer
//   loader.ts           buildDatasets(config) → train/valid/test; BatchIterator: batch k → tokens,
//                       labels, loss mask for one data-parallel rank (blending slots in here)

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
