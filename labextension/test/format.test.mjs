// Unit tests of the display formatting (node --test; run after `tsc` has built lib/).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  duration,
  grams,
  runName,
  runTitle,
  sig,
  statusMark,
  watts,
  wattHours
} from '../lib/format.js';

test('three significant figures, whole numbers from 100', () => {
  assert.equal(sig(0), '0');
  assert.equal(sig(0.012345), '0.0123');
  assert.equal(sig(1.5), '1.50');
  assert.equal(sig(42.25), '42.3');
  assert.equal(sig(1234.5), '1235');
  assert.equal(sig(0.0000178), '1.8e-5');
});

test('energy is shown in Wh, missing numbers as a dash', () => {
  assert.equal(wattHours(3600), '1.00');
  assert.equal(wattHours(36), '0.0100');
  assert.equal(wattHours(null), '–');
  assert.equal(watts(49.96), '50.0 W');
  assert.equal(grams(undefined), '–');
});

test('durations read as seconds, minutes or hours', () => {
  assert.equal(duration(2.5), '2.50 s');
  assert.equal(duration(125), '2 min 5 s');
  assert.equal(duration(7260), '2 h 1 min');
});

test('a run is named by its label, else its execution count, else its cell', () => {
  assert.equal(runName({ label: 'bert', cell: 'c1', tags: { execution_count: '3' } }), 'bert');
  assert.equal(runName({ label: null, cell: 'c1', tags: { execution_count: '3' } }), 'In [3]');
  assert.equal(runName({ label: null, cell: 'abcdef123456', tags: {} }), 'cell abcdef12');
  assert.equal(runName({ label: null, cell: null, tags: {} }), 'run');
});

test('a run with warnings is marked, and its tooltip lists them', () => {
  const clean = { status: 'ok', error: null, warnings: [] };
  assert.equal(statusMark(clean), 'ok');
  assert.equal(runTitle(clean), '');
  const warned = { status: 'ok', error: null, warnings: ['cpu:1 stopped answering', 'glitch'] };
  assert.equal(statusMark(warned), 'ok ⚠2');
  assert.equal(runTitle(warned), '⚠ cpu:1 stopped answering\n⚠ glitch');
  assert.equal(statusMark({ status: 'lost' }), 'lost');
});
