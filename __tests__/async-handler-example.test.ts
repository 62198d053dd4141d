// asyncHandler's doc example, pasted as is into an Express app: `npm run typecheck` compiles this
// file, so the example type-checks (Express's Request and Response are what the handler gets)
// or the build fails; the tests then run it.
import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { asyncHandler } from '../lib/middleware/recovery.js';
import { expressVersions } from './support/express-versions.js';

const loadUsage = async () => ({ requests: 3, spendUsd: 0.25 });

describe.each(expressVersions)('asyncHandler as documented, on %s', (_label, express) => {
  it('hands the handler Express’s request and response, so `res.json` type-checks and answers', async () => {
    const app = express();
    app.get(
      '/v1/usage',
      asyncHandler(async (req, res) => res.json(await loadUsage())),
    );

    const res = await request(app).get('/v1/usage');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ requests: 3, spendUsd: 0.25 });
  });

  it('types the parameters as Express’s, not as `any`', async () => {
    const app = express();
    app.get(
      '/v1/usage/:day',
      asyncHandler(async (req, res) => {
        const day = String(req.params.day);
        // @ts-expect-error `res` is Express's Response: a misspelt method is a type error.
        if (day === 'never') res.jsonn({});
        res.status(200).json({ day, usage: await loadUsage() });
      }),
    );

    const res = await request(app).get('/v1/usage/2026-01-02');
    expect(res.body).toEqual({ day: '2026-01-02', usage: { requests: 3, spendUsd: 0.25 } });
  });
});
