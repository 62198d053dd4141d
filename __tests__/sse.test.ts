import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { SseSplitter } from '../lib/upstream/sse.js';
import { fuzzRuns } from './support/fuzz.js';

interface Seen {
  raw: string;
  data: string | undefined;
  event: string | undefined;
}

function split(chunks: Buffer[], maxEventBytes?: number): { events: Seen[]; incomplete: boolean } {
  const splitter = new SseSplitter(maxEventBytes);
  const events: Seen[] = [];
  const visitor = {
    onEvent(frame: Buffer, start: number, end: number, data: string | undefined, event: string | undefined) {
      events.push({ raw: frame.toString('utf8', start, end), data, event });
    },
  };
  for (const chunk of chunks) splitter.push(chunk, visitor);
  return { events, incomplete: splitter.hasIncompleteEvent() };
}

const semantic = (events: Seen[]) => events.filter((e) => e.data !== undefined).map((e) => [e.event, e.data]);

describe('SseSplitter', () => {
  it.each([
    [
      'LF',
      'data: a\n\ndata: b\n\n',
      [
        [undefined, 'a'],
        [undefined, 'b'],
      ],
    ],
    [
      'CRLF',
      'data: a\r\n\r\ndata: b\r\n\r\n',
      [
        [undefined, 'a'],
        [undefined, 'b'],
      ],
    ],
    [
      'CR',
      'data: a\r\rdata: b\r\r',
      [
        [undefined, 'a'],
        [undefined, 'b'],
      ],
    ],
    ['multi-line data', 'data: a\ndata: b\n\n', [[undefined, 'a\nb']]],
    ['named event', 'event: error\ndata: {"x":1}\n\n', [['error', '{"x":1}']]],
    ['no space after colon', 'data:x\n\n', [[undefined, 'x']]],
    ['a field without colon', 'data\n\n', [[undefined, '']]],
    ['comments are not data', ': ping\n\ndata: a\n\n', [[undefined, 'a']]],
    ['unicode', 'data: héllo 👋\n\n', [[undefined, 'héllo 👋']]],
  ])('parses %s', (_name, text, expected) => {
    expect(semantic(split([Buffer.from(text)]).events)).toEqual(expected);
  });

  it('forwards the raw bytes of every block, comments included', () => {
    const text = ': ping\n\ndata: a\n\n';
    expect(
      split([Buffer.from(text)])
        .events.map((e) => e.raw)
        .join(''),
    ).toBe(text);
  });

  it('holds back an incomplete event until its end arrives', () => {
    const result = split([Buffer.from('data: a\n\ndata: par')]);
    expect(semantic(result.events)).toEqual([[undefined, 'a']]);
    expect(result.incomplete).toBe(true);
  });

  it('reports an event above maxEventBytes', () => {
    const splitter = new SseSplitter(16);
    expect(splitter.push(Buffer.from(`data: ${'x'.repeat(64)}`), { onEvent: () => undefined })).toBe(false);
  });

  it('reads an event that arrives in many chunks without line breaks, and bounds it all the same', () => {
    const body = 'y'.repeat(4_000);
    const bytes = Buffer.from(`event: big\r\ndata: ${body}\r\n\r\ndata: next\n\n`);
    // 10-byte chunks: most hold no line break, and one ends on the CR of a CRLF.
    const chunks: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += 10) chunks.push(bytes.subarray(at, at + 10));
    const result = split(chunks);
    expect(semantic(result.events)).toEqual([
      ['big', body],
      [undefined, 'next'],
    ]);
    expect(result.incomplete).toBe(false);

    const bounded = new SseSplitter(1_000);
    const visitor = { onEvent: () => undefined };
    const verdicts = chunks.slice(0, 200).map((chunk) => bounded.push(chunk, visitor));
    expect(verdicts.indexOf(false)).toBe(100);
    expect(bounded.hasIncompleteEvent()).toBe(true);
  });

  const eventArb = fc.record({
    event: fc.option(fc.constantFrom('message', 'error', 'ping'), { nil: undefined }),
    lines: fc.array(
      fc.string({ unit: 'grapheme' }).filter((s) => !/[\r\n]/.test(s)),
      { minLength: 1, maxLength: 3 },
    ),
    eol: fc.constantFrom('\n', '\r\n', '\r'),
  });

  it('gives the same events for any split of the same bytes', () => {
    fc.assert(
      fc.property(
        fc.array(eventArb, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (events, cuts) => {
          const text = events
            .map(
              (e) =>
                (e.event ? `event: ${e.event}${e.eol}` : '') +
                e.lines.map((l) => `data: ${l}${e.eol}`).join('') +
                e.eol,
            )
            .join('');
          const bytes = Buffer.from(text);
          const positions = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          const chunks: Buffer[] = [];
          let last = 0;
          for (const p of positions) {
            chunks.push(bytes.subarray(last, p));
            last = p;
          }
          chunks.push(bytes.subarray(last));
          const whole = split([bytes]);
          const pieces = split(chunks);
          expect(semantic(pieces.events)).toEqual(semantic(whole.events));
          expect(semantic(whole.events)).toEqual(events.map((e) => [e.event, e.lines.join('\n')]));
          expect(pieces.incomplete).toBe(false);
        },
      ),
      { numRuns: fuzzRuns(200) },
    );
  });
});
