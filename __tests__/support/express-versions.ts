// Both supported Express majors, for `describe.each` over the middlewares.
import express5 from 'express';
import express4 from 'express4';

/** `[label, express factory]` for every supported Express major. */
export const expressVersions: [string, typeof express5][] = [
  ['express 5', express5],
  ['express 4', express4],
];
