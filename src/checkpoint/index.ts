// checkpoint/: tensors on disk.
//
//   safetensors.ts  the safetensors format: byte-identical writer (whole, or streamed tensor by
//                   tensor from a producer), validating reader with positioned reads, HF shards
//                   (model-0000i-of-0000K.safetensors + model.safetensors.index.json), atomic
//                   temp + fsync + rename writes
//   checkpoint.ts   training checkpoints: {save}/global_step{N}/ with model/optimizer
//                   safetensors, state.json, config.json and a checksummed manifest; `latest`;
//                   keepLastN pruning; verified loads that refuse corrupt checkpoints
//   inspect.ts      `neox checkpoint inspect DIR`: step, parameters, layers, tensor table, bytes,
//                   manifest verification

export * from './safetensors.js';
export * from './checkpoint.js';
export * from './inspect.js';
