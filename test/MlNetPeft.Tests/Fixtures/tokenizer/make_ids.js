#!/usr/bin/env node
// Writes ids.jsonl with HuggingFace's own tokenizers library (the Rust one, through its Node binding: npm package
// `tokenizers`), set up as transformers' RobertaTokenizerFast for roberta-base: byte-level BPE, special tokens found
// in the text (<mask> taking the whitespace before it), <s> A </s></s> B </s>, longest-first truncation.
// Rows { text, ids }: ids of the text alone, no special tokens: the hand-written cases below, the shortest GLUE cells
// that between them hold every non-ASCII character of GLUE, and 400 ASCII cells drawn with a fixed seed.
// Rows { text, pair, max, ids }: model input of a pair (or of one text where pair is null) cut to max tokens.
// Also added_tokens.json and added_ids.jsonl: the same tokenizer with tokens added as users add them (new ids, one
// already in the vocabulary, every flag), as tokenizers saves them in tokenizer.json, and ids of texts holding them.
// Run from the repository root:
//   npm install --prefix /tmp/hf tokenizers@0.23.2
//   NODE_PATH=/tmp/hf/node_modules node test/MlNetPeft.Tests/Fixtures/tokenizer/make_ids.js
const fs = require('fs');
const path = require('path');
const { Tokenizer, AddedToken } = require('tokenizers');

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
  // tokenizers 0.23 stops tokenizing a text at the word that reaches max, so two long texts count as about max each.
  ['a b c d e f g h i j k l', 'k l m n o p q r s t u', 11], ['a b c d e f g h i j k l m n o p', 'k l m n o p q r s t u v', 11],
  ['a b c d e f g h i jxqzvwk l m n', 'k l m n o p q r s t u v', 13], ['a b c d e f g h i j k l', 'k l m n o p q r s <x> u v', 13],
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
  await writeAddedTokens(ascii.slice(400, 600), random);
})();

const ADDED = [
  new AddedToken('[URL]', false), new AddedToken('<sep2>', true, { rightStrip: true }),
  new AddedToken('qzq', false, { singleWord: true }), new AddedToken('@@', false, { leftStrip: true, rightStrip: true }),
  new AddedToken('<x>', false), new AddedToken('<xy>', false), new AddedToken('world', false, { singleWord: true }),
  new AddedToken('ABCD', false), new AddedToken('BC', false, { normalized: false }),
  new AddedToken('\u{1F600}x', false, { singleWord: true, leftStrip: true }), new AddedToken('[EOT]', true, { singleWord: true }),
];
const ADDED_CASES = [
  '[URL]', 'see [URL] now', 'see[URL]now', '[URL][URL]', '<sep2>   next', 'a <sep2>\tb', 'a<sep2>', 'lqzq qzq pqzq', 'qzq',
  'qzq.', '_qzq', 'qzq_', '\u00e9qzq', 'e\u0301qzq', '\u24b6qzq', '\u0663qzq', 'qzq\u0663', '\u200dqzq', 'qzq\u00a0qzq',
  ' qzq ', 'x @@ y', 'x   @@   y', '@@@@', '@@ @@', '\u2000@@\u2000', '<x><xy><xyz', '<x', 'hello world', 'helloworld',
  'world!', 'worlds', 'ABCD', 'ABC', 'xBCx', 'ABCDBC', 'a \u{1F600}x b', 'a\u{1F600}x', '\u{1F600}xy', '\u{1D400}\u{1F600}x',
  ' \u{1F600}x', '[EOT]', 'a[EOT]b', 'a [EOT] b', '<s>[URL]</s>', 'a <mask>@@<mask> b', '<mask>qzq', 'qzq<mask>',
];

/** added_tokens.json (as tokenizers saves them) and added_ids.jsonl (texts with them, alone and in cut pairs). */
async function writeAddedTokens(cells, random) {
  const tok = robertaTokenizer();
  tok.addAddedTokens(ADDED);
  const saved = path.join(require('os').tmpdir(), 'added-tokenizer.json');
  tok.save(saved);
  fs.writeFileSync(path.join(__dirname, 'added_tokens.json'),
    JSON.stringify(JSON.parse(fs.readFileSync(saved, 'utf8')).added_tokens, null, 1) + '\n');
  const pick = list => list[Math.floor(random() * list.length)];
  const spaces = ['', ' ', '  ', '\t'];
  const texts = [...ADDED_CASES, ...cells.map(cell => { // tokens put at random places, inside words too
    const chars = [...cell]; // code points: never between the halves of a surrogate pair
    for (let k = 0; k < 3; k++)
      chars.splice(Math.floor(random() * (chars.length + 1)), 0, pick(spaces) + pick(ADDED).getContent() + pick(spaces));
    return chars.join('');
  })];
  const rows = [];
  for (const text of texts) rows.push({ text, ids: (await tok.encode(text, null, { addSpecialTokens: false })).getIds() });
  for (let i = 0; i < 20; i++) {
    const [text, pair, max] = [texts[ADDED_CASES.length + i], texts[ADDED_CASES.length + 100 + i], 12 + i];
    tok.setTruncation(max, { strategy: 'LongestFirst' });
    rows.push({ text, pair, max, ids: (await tok.encode(text, pair)).getIds() });
  }
  fs.writeFileSync(path.join(__dirname, 'added_ids.jsonl'), rows.map(r => JSON.stringify(r)).join('\n') + '\n');
  console.log(`${rows.length} rows with added tokens`);
}
