#!/usr/bin/env node
// Writes ids.jsonl with HuggingFace's own tokenizers library (the Rust one, through its Node binding: npm package
// `tokenizers`), set up as transformers' RobertaTokenizerFast for roberta-base: byte-level BPE, special tokens found
// in the text (<mask> taking the whitespace before it), <s> A </s></s> B </s>, longest-first truncation.
// Rows { text, ids }: ids of the text alone, no special tokens: the hand-written cases below, the shortest GLUE cells
// that between them hold every non-ASCII character of GLUE, and 400 ASCII cells drawn with a fixed seed.
// Rows { text, pair, max, ids }: model input of a pair (or of one text where pair is null) cut to max tokens.
// Run from the repository root:
//   npm install --prefix /tmp/hf tokenizers@0.23.2
//   NODE_PATH=/tmp/hf/node_modules node test/MlNetPeft.Tests/Fixtures/tokenizer/make_ids.js
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const root = path.resolve(__dirname, '..', '..', '..', '..');
const backbone = path.join(root, 'models', 'roberta-mini');

function robertaTokenizer() {
  const vocab = JSON.parse(fs.readFileSync(path.join(backbone, 'vocab.json'), 'utf8'));
  const merges = fs.readFileSync(path.join(backbone, 'merges.txt'), 'utf8').split('\n')
    .filter(l => l.trim() && !l.startsWith('#version'));
  const special = (id, content, lstrip = false) =>
    ({ id, content, single_word: false, lstrip, rstrip: false, normalized: content !== '<mask>', special: true });
  return Tokenizer.fromString(JSON.stringify({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [special(0, '<s>'), special(1, '<pad>'), special(2, '</s>'), special(3, '<unk>'), special(50264, '<mask>', true)],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0], trim_offsets: true, add_prefix_space: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  }));
}

const CASES = [
  '', ' ', '   leading', 'trailing   ', 'multiple   spaces  here', 'tabs\tand\nnewlines\r\n', '\u00a0nbsp\u00a0',
  'zero\u200bwidth', "don't I'll we've they're she'd it's", "DON'T I'LL", 'numbers 123456 3.14 1,000',
  '\u0661\u0662\u0663 arabic digits', '\u216b roman', '\u00bd fraction', 'x\u00b2', 'naïve café', 'Ünïcödé',
  'e\u0301 and \u0301combining', '\ufb01 ligature', 'Ω ω', '\u01c4 title case', '日本語のテキスト', '한국어',
  'emoji 😀👍🏽 and 👨\u200d👩\u200d👧', 'math 𝐀𝐁𝐂 bold', 'a𝐀b', '\u{20000}\u{20001} ext-B', '\ufeffbyte order mark',
  'ctrl\x01\x7fchars',
  // Special tokens written in the text.
  '<s> special </s> tokens <mask>', '<s>old price</s> new price', 'a <mask> b', 'a\t \n<mask>b', ' <mask>', '<mask>',
  'x</s>y', '<pad><unk>', '<<s>>', '<s', '</s >', '< mask>', '<MASK>', 'a  <s>  b', '<mask><mask> <mask>',
];

const PAIRS = [
  ['one two three four five six seven eight nine ten', 'alpha beta gamma', 12],
  ['one two three four', 'alpha beta gamma delta', 8], ['one two three four', 'alpha beta gamma delta', 9],
  ['a b c d e f', 'g h i', 7], ['a b c d e f', 'g h i', 6], ['a b', 'c d e f g h', 9], ['a b c', 'd e f g h', 9],
  ['x', 'y', 6], ['one two three four five', null, 5], ['one two three four five', null, 7],
];

function cells() {
  const glue = path.join(root, 'data', 'glue');
  const out = [];
  for (const task of fs.readdirSync(glue).sort()) {
    const dir = path.join(glue, task);
    if (!fs.statSync(dir).isDirectory()) continue;
    for (const split of fs.readdirSync(dir).sort())
      for (const line of fs.readFileSync(path.join(dir, split), 'utf8').split('\n'))
        for (const cell of line.split('\t')) if ([...cell].length > 3) out.push(cell);
  }
  return [...new Set(out)].sort();
}

/** The first rows of the GLUE pair tasks' dev files: [sentence1, sentence2]. */
function gluePairs(perTask) {
  const tasks = { MRPC: [3, 4], RTE: [1, 2], QNLI: [1, 2], 'STS-B': [7, 8] };
  return Object.entries(tasks).flatMap(([task, [a, b]]) =>
    fs.readFileSync(path.join(root, 'data', 'glue', task, 'dev.tsv'), 'utf8').split('\n').slice(1, perTask + 1)
      .map(l => l.split('\t')).map(c => [c[a], c[b]]));
}

function seeded(seed) { // mulberry32
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

(async () => {
  const tok = robertaTokenizer();
  const texts = cells();
  const wide = [];
  const seen = new Set();
  const byLength = texts.filter(t => /[^\x00-\x7f]/.test(t)).sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0));
  for (const t of byLength) {
    const fresh = [...t].filter(c => c.codePointAt(0) > 127 && !seen.has(c));
    if (fresh.length) { wide.push(t); for (const c of t) seen.add(c); }
  }
  const ascii = texts.filter(t => !/[^\x00-\x7f]/.test(t));
  const random = seeded(42);
  for (let i = ascii.length - 1; i > 0; i--) { const j = Math.floor(random() * (i + 1)); [ascii[i], ascii[j]] = [ascii[j], ascii[i]]; }

  const rows = [];
  for (const text of [...CASES, ...wide, ...ascii.slice(0, 400)]) {
    const e = await tok.encode(text, null, { addSpecialTokens: false });
    rows.push({ text, ids: e.getIds() });
  }
  const pairs = [...PAIRS, ...gluePairs(5).flatMap(([a, b]) => [[a, b, 16], [a, b, 17], [a, b, 40], [a, b, 128]])];
  for (const [text, pair, max] of pairs) {
    tok.setTruncation(max, { strategy: 'LongestFirst' });
    const e = await tok.encode(text, pair);
    rows.push({ text, pair, max, ids: e.getIds() });
  }
  fs.writeFileSync(path.join(__dirname, 'ids.jsonl'), rows.map(r => JSON.stringify(r)).join('\n') + '\n');
  console.log(`${rows.length} rows`);
})();
