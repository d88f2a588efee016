/** Public surface of core/io: safetensors, HF checkpoints, PEFT adapters, tokenizers and file sources. */
export * from './safetensors.ts';
export * from './source.ts';
export * from './hf-checkpoint.ts';
export * from './peft.ts';
export * from './tokenizer.ts';
export { utf8Decode, utf8Encode, createStreamingUtf8Decoder } from './text.ts';
