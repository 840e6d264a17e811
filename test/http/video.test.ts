/**
 * Issue 11: video through the real server and the real ffmpeg/ffprobe. Uploads are probed (facts in
 * GET /v1/assets/{id}) and hostile containers refused with nothing stored; a preview and a poster frame
 * come back in the request; a whole transcode is a job on the video queue that reports progress up to
 * 100 and whose output (an encrypted asset) is checked with ffprobe; cancel kills ffmpeg, keeps no
 * output and leaves no temporary file; another org can reach none of it.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { DB_KINDS, superQuery, tempDir } from '../support/db.js';
import { clip, fpsOf, probe, videoStream } from '../support/video.js';
import sharp from 'sharp';
import { api, raw, startHarness, startTestWorkers, upload, waitFor, waitForJob, type Harness } from '../jobs/support.js';

/** Downloads an asset's plaintext through a signed URL (the product's download path). */
async function download(h: Harness, key: string, assetId: string): Promise<Buffer> {
  const u = await api(h.srv.url, 'POST', `/v1/assets/${assetId}/url`, { key });
  assert.equal(u.status, 201, JSON.stringify(u.body));
  const res = await fetch(u.body.url);
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

/**
 * Pids of running ffmpeg processes this process started (prlimit execs ffmpeg, so its parent is us):
 * other test files and other users of the machine run ffmpeg too, and their runs are not this job's.
 */
function ffmpegPids(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (cmd.split('\0')[0]!.endsWith('ffmpeg') && ppid === process.pid) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

for (const kind of DB_KINDS) {
  describe(`video through the API (${kind})`, () => {
    let h: Harness;
    let workers: Awaited<ReturnType<typeof startTestWorkers>>;
    let videoId: string;
    const temp = tempDir('obscura-video-temp-');

    before(async () => {
      h = await startHarness(kind, { env: { OBSCURA_VIDEO_TEMP_DIR: temp, OBSCURA_VIDEO_PROGRESS_WEBHOOK_SECONDS: '1' }, targets: 1 });
      workers = await startTestWorkers(h);
    });
    after(async () => {
      await workers.stop();
      await h.close();
    });

    test('an uploaded video is probed: container, duration, size, fps, codecs and audio are on the asset', async () => {
      videoId = await upload(h.srv, h.a.key, await clip({ width: 320, height: 240, seconds: 3, fps: 25 }));
      const r = await api(h.srv.url, 'GET', `/v1/assets/${videoId}`, { key: h.a.key });
      assert.equal(r.status, 200);
      assert.equal(r.body.content_type, 'video/mp4');
      assert.equal(r.body.width, 320);
      assert.equal(r.body.height, 240);
      const v = r.body.video;
      assert.ok(v.container.split(',').includes('mov'));
      assert.ok(Math.abs(v.duration_seconds - 3) < 0.2, String(v.duration_seconds));
      assert.equal(v.fps, 25);
      assert.equal(v.video_codec, 'h264');
      assert.equal(v.audio.codec, 'aac');
      assert.equal(v.rotation, 0);
      assert.equal(v.color.hdr, false);
      // An image has no video facts.
      const webm = await upload(h.srv, h.a.key, await clip({ container: 'webm', seconds: 1 }));
      const w = await api(h.srv.url, 'GET', `/v1/assets/${webm}`, { key: h.a.key });
      assert.equal(w.body.content_type, 'video/webm');
      assert.equal(w.body.video.video_codec, 'vp9');
      assert.equal(w.body.video.audio.codec, 'opus');
    });

    test('a rotated phone video reports its display rotation and displayed size; an index at the end is read by seeking', async () => {
      const id = await upload(h.srv, h.a.key, await clip({ width: 160, height: 96, seconds: 1, rotate: 90, moovAtEnd: true }));
      const r = await api(h.srv.url, 'GET', `/v1/assets/${id}`, { key: h.a.key });
      // ffmpeg 5.1 writes the tag as a matrix that reads back as a quarter turn either way; the
      // displayed frame is portrait whichever it is.
      assert.ok([90, 270].includes(r.body.video.rotation), String(r.body.video.rotation));
      assert.equal(r.body.video.width, 160);
      assert.equal(r.body.width, 96);
      assert.equal(r.body.height, 160);
      // Processing shows the frame as displayed: a poster of the rotated clip is portrait.
      const poster = await raw(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: JSON.stringify({ input: { asset_id: id }, operations: 'poster:format=png' }), headers: { 'content-type': 'application/json' } });
      assert.equal(poster.status, 200, poster.body.toString());
      const v = videoStream(await probe(poster.body));
      assert.equal(Number(v.width), 96);
      assert.equal(Number(v.height), 160);
    });

    test('files that do not probe as their container are refused with 422 and nothing is stored; a real clip is accepted', async () => {
      const good = await clip({ seconds: 1 });
      const ftyp = good.subarray(0, good.readUInt32BE(0));
      const box = (type: string, body: Buffer) => {
        const head = Buffer.alloc(8);
        head.writeUInt32BE(8 + body.length, 0);
        head.write(type, 4, 'latin1');
        return Buffer.concat([head, body]);
      };
      const hostile: Record<string, Buffer> = {
        // Boxes tile the file and moov exists, so only ffprobe can tell it is not a playable video.
        'moov with garbage inside': Buffer.concat([ftyp, box('moov', Buffer.alloc(64, 7)), box('mdat', Buffer.alloc(4000, 1))]),
        'an HLS playlist behind an ftyp box': Buffer.concat([ftyp, box('moov', Buffer.from('#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n')), box('mdat', Buffer.alloc(100))]),
        'an ffconcat script behind an ftyp box': Buffer.concat([ftyp, box('moov', Buffer.from("ffconcat version 1.0\nfile '/etc/passwd'\n")), box('mdat', Buffer.alloc(100))]),
      };
      const before = Number((await superQuery(h.t, 'SELECT count(*)::int AS n FROM assets'))[0]!.n);
      for (const [name, bytes] of Object.entries(hostile)) {
        const r = await raw(h.srv.url, 'POST', '/v1/assets', { key: h.a.key, body: bytes, headers: { 'content-type': 'application/octet-stream' } });
        assert.equal(r.status, 422, `${name}: ${r.body.toString()}`);
        const p = JSON.parse(r.body.toString());
        assert.equal(p.code, 'ERR_MEDIA_INVALID', name);
        assert.match(p.detail ?? p.message ?? JSON.stringify(p), /valid video\/mp4/);
      }
      assert.equal(Number((await superQuery(h.t, 'SELECT count(*)::int AS n FROM assets'))[0]!.n), before);
      assert.ok((await upload(h.srv, h.a.key, good)).startsWith('ast_'));
    });

    test('a preview comes back in the request: short, small, watermarked; a whole transcode is pointed to jobs', async () => {
      const r = await raw(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: JSON.stringify({ input: { asset_id: videoId }, operations: 'format:mp4,preset=ultrafast', preview: true }), headers: { 'content-type': 'application/json' } });
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(r.headers.get('content-type'), 'video/mp4');
      const p = await probe(r.body);
      const v = videoStream(p);
      assert.ok(Number(p.format!.duration) <= 3.1);
      assert.ok(Number(v.width) <= 640 && Number(v.height) <= 360);
      const whole = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { asset_id: videoId }, operations: 'scale:height=120' } });
      assert.equal(whole.status, 422);
      assert.equal(whole.body.code, 'ERR_UNPROCESSABLE');
      assert.equal(whole.body.reason, 'video_needs_job');
    });

    test('a poster frame comes back as an image', async () => {
      const r = await raw(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: JSON.stringify({ input: { asset_id: videoId }, operations: 'scale:height=60/poster:at=1,format=png' }), headers: { 'content-type': 'application/json' } });
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(r.headers.get('content-type'), 'image/png');
      const v = videoStream(await probe(r.body));
      assert.equal(Number(v.height), 60);
      assert.equal(Number(v.width), 80);
    });

    test('a video job runs on the video queue: progress reaches 100, the output is an encrypted H.264 720p-style rendition checked with ffprobe', async () => {
      const created = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: videoId }, operations: 'trim:start=0.5,duration=2/scale:height=120/fps:rate=15/format:mp4,codec=h264,crf=30,preset=ultrafast' } });
      assert.equal(created.status, 202, JSON.stringify(created.body));
      assert.equal(created.body.media, 'video');
      const job = await waitForJob(h.srv, h.a.key, created.body.id, 60_000);
      assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
      assert.equal(job.progress.percent, 100);
      const out = await download(h, h.a.key, job.output.asset_id);
      const p = await probe(out);
      const v = videoStream(p);
      assert.equal(v.codec_name, 'h264');
      assert.equal(Number(v.height), 120);
      assert.equal(Number(v.width), 160);
      assert.ok(Math.abs(fpsOf(v) - 15) < 0.01, String(v.avg_frame_rate));
      assert.ok(Math.abs(Number(p.format!.duration) - 2) < 0.25, p.format!.duration);
      assert.ok(p.streams.some((s) => s.codec_type === 'audio' && s.codec_name === 'aac'));
      // The stored blob is ciphertext: no MP4 box names in it.
      const rows = await superQuery(h.t, 'SELECT blob_key FROM assets WHERE id = $1', [job.output.asset_id]);
      assert.equal(rows.length, 1);
      const asset = await api(h.srv.url, 'GET', `/v1/assets/${job.output.asset_id}`, { key: h.a.key });
      assert.equal(asset.body.kind, 'output');
      assert.equal(asset.body.content_type, 'video/mp4');
      // No temporary file is left behind.
      assert.deepEqual(existsSync(temp) ? readdirSync(temp) : [], []);
    });

    test('cancel kills ffmpeg within 2 s, keeps no output and leaves no temporary file; a finished job cannot be cancelled', async () => {
      const long = await upload(h.srv, h.a.key, await clip({ width: 640, height: 480, seconds: 30, fps: 30 }));
      const created = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: long }, operations: 'denoise:nlmeans,strength=8/format:webm,codec=vp9,preset=veryslow' } });
      assert.equal(created.status, 202);
      await waitFor(async () => (await api(h.srv.url, 'GET', `/v1/jobs/${created.body.id}`, { key: h.a.key })).body.progress !== null, 30_000, 'first progress');
      const running = ffmpegPids();
      assert.ok(running.length > 0, 'ffmpeg is running');
      // Image jobs have their own workers: one runs to the end while the long transcode holds the video worker.
      const png = await upload(h.srv, h.a.key, await sharp({ create: { width: 64, height: 48, channels: 3, background: '#336699' } }).png().toBuffer());
      const image = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: png }, operations: 'resize:width=32/format:webp' } });
      assert.equal(image.status, 202);
      assert.equal(image.body.media, 'image');
      assert.equal((await waitForJob(h.srv, h.a.key, image.body.id, 20_000)).status, 'succeeded');
      assert.equal((await api(h.srv.url, 'GET', `/v1/jobs/${created.body.id}`, { key: h.a.key })).body.status, 'running', 'the video is still running');
      // Another org cannot cancel it (404), and its own owner can.
      assert.equal((await api(h.srv.url, 'POST', `/v1/jobs/${created.body.id}/cancel`, { key: h.b.key })).status, 404);
      const t0 = Date.now();
      const c = await api(h.srv.url, 'POST', `/v1/jobs/${created.body.id}/cancel`, { key: h.a.key });
      assert.equal(c.status, 200, JSON.stringify(c.body));
      assert.equal(c.body.status, 'cancelled');
      await waitFor(async () => running.every((pid) => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] === 'Z'), 5000, 'ffmpeg to die');
      assert.ok(Date.now() - t0 < 2500, `ffmpeg died after ${Date.now() - t0} ms`);
      await new Promise((r) => setTimeout(r, 1000));
      const job = (await api(h.srv.url, 'GET', `/v1/jobs/${created.body.id}`, { key: h.a.key })).body;
      assert.equal(job.status, 'cancelled');
      assert.equal(job.output.asset_id, null);
      assert.equal(job.error.code, 'ERR_JOB_CANCELLED');
      assert.deepEqual(existsSync(temp) ? readdirSync(temp) : [], []);
      const again = await api(h.srv.url, 'POST', `/v1/jobs/${created.body.id}/cancel`, { key: h.a.key });
      assert.equal(again.status, 409);
      assert.equal(again.body.code, 'ERR_CONFLICT');
    });

    test('text and an image watermark of the same org are drawn on the frames; another org\'s image is not found', async () => {
      const wm = await upload(h.srv, h.a.key, await sharp({ create: { width: 64, height: 64, channels: 3, background: '#ff00ff' } }).png().toBuffer());
      const frame = async (ops: string, key = h.a.key) => raw(h.srv.url, 'POST', '/v1/process', { key, body: JSON.stringify({ input: { asset_id: videoId }, operations: ops }), headers: { 'content-type': 'application/json' } });
      const plain = await frame('poster:at=1,format=png');
      const marked = await frame(`watermark:asset=${wm},gravity=northwest,width=0.25,opacity=1/poster:at=1,format=png`);
      assert.equal(marked.status, 200, marked.body.toString());
      const [a, b] = await Promise.all([sharp(plain.body).raw().toBuffer({ resolveWithObject: true }), sharp(marked.body).raw().toBuffer({ resolveWithObject: true })]);
      // The top-left corner (2 % margin, then a 80 px wide square) is magenta only in the marked frame.
      const px = (img: typeof a, x: number, y: number) => [...img.data.subarray((y * img.info.width + x) * img.info.channels, (y * img.info.width + x) * img.info.channels + 3)];
      const m = px(b, 30, 30);
      assert.ok(m[0]! > 200 && m[1]! < 60 && m[2]! > 200, `magenta expected, got ${m}`);
      assert.notDeepEqual(px(a, 30, 30), m);
      const texted = await frame('text:text=Obscura,size=40,gravity=center,color=%23ff0000/poster:at=1,format=png');
      assert.equal(texted.status, 200, texted.body.toString());
      const t = await sharp(texted.body).raw().toBuffer({ resolveWithObject: true });
      let red = 0;
      for (let y = 100; y < 140; y++) for (let x = 100; x < 220; x++) { const [r, g, bl] = px(t, x, y); if (r! > 200 && g! < 60 && bl! < 60) red++; }
      assert.ok(red > 100, `red text pixels in the centre: ${red}`);
      // Org B may not name org A's image, even on its own video.
      const bVideo = await upload(h.srv, h.b.key, await clip({ seconds: 1 }));
      const cross = await raw(h.srv.url, 'POST', '/v1/process', { key: h.b.key, body: JSON.stringify({ input: { asset_id: bVideo }, operations: `watermark:asset=${wm}/poster` }), headers: { 'content-type': 'application/json' } });
      assert.equal(cross.status, 404, cross.body.toString());
    });

    test('an animated GIF comes back in the request; a storyboard job gives a WebVTT file whose cues name tiles of a signed sprite sheet', async () => {
      const gif = await raw(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: JSON.stringify({ input: { asset_id: videoId }, operations: 'animate:format=gif,start=0.5,duration=1,fps=10,width=120' }), headers: { 'content-type': 'application/json' } });
      assert.equal(gif.status, 200, gif.body.toString());
      assert.equal(gif.headers.get('content-type'), 'image/gif');
      const g = videoStream(await probe(gif.body));
      assert.equal(g.codec_name, 'gif');
      assert.equal(Number(g.width), 120);
      assert.ok(Math.abs(Number(g.nb_read_frames) - 10) <= 1, String(g.nb_read_frames));
      const created = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: videoId }, operations: 'storyboard:interval=1,width=80,columns=2' } });
      assert.equal(created.status, 202, JSON.stringify(created.body));
      const job = await waitForJob(h.srv, h.a.key, created.body.id, 60_000);
      assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
      const link = await api(h.srv.url, 'POST', `/v1/assets/${job.output.asset_id}/url`, { key: h.a.key });
      const res = await fetch(link.body.url);
      assert.equal(res.headers.get('content-type'), 'text/vtt');
      const vtt = await res.text();
      assert.match(vtt, /^WEBVTT\n/);
      const cues = [...vtt.matchAll(/(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n(\S+)#xywh=(\d+),(\d+),(\d+),(\d+)/g)];
      assert.equal(cues.length, 3, vtt); // a 3 s clip, a tile every second
      assert.equal(cues[1]![1], '00:00:01.000');
      assert.deepEqual(cues.map((c) => `${c[4]},${c[5]}`), ['0,0', '80,0', '0,60']);
      const sprite = new URL(cues[0]![3]!);
      assert.equal(sprite.searchParams.get('exp'), new URL(link.body.url).searchParams.get('exp'), 'the sprite expires with the WebVTT file');
      const sheet = await fetch(sprite);
      assert.equal(sheet.headers.get('content-type'), 'image/jpeg');
      const meta = await sharp(Buffer.from(await sheet.arrayBuffer())).metadata();
      assert.equal(meta.width, 160);
      assert.equal(meta.height, 120);
      // A storyboard has two files: it is a job, not a request.
      const sync = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { asset_id: videoId }, operations: 'storyboard', preview: true } });
      assert.equal(sync.status, 422);
      assert.equal(sync.body.reason, 'video_needs_job');
    });

    test('webhooks: job.progress while a video job runs, then job.completed', async () => {
      const hook = h.targets[0]!;
      hook.handler = (_r, res) => res.writeHead(200).end();
      try {
        const w = await api(h.srv.url, 'POST', '/v1/webhooks', { key: h.a.key, body: { url: `${hook.origin}/hook`, events: ['job.progress', 'job.completed'] } });
        assert.equal(w.status, 201, JSON.stringify(w.body));
        const long = await upload(h.srv, h.a.key, await clip({ width: 320, height: 240, seconds: 8 }));
        const created = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: long }, operations: 'denoise:nlmeans,strength=2/format:mp4,preset=medium' } });
        const job = await waitForJob(h.srv, h.a.key, created.body.id, 90_000);
        assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
        const events = await waitFor(async () => {
          const types = hook.requests.map((r) => JSON.parse(r.body.toString()).type as string);
          return types.includes('job.completed') ? types : null;
        }, 20_000, 'job.completed delivery');
        assert.ok(events.includes('job.progress'), JSON.stringify(events));
        const progress = hook.requests.map((r) => JSON.parse(r.body.toString())).find((e) => e.type === 'job.progress');
        assert.ok(progress.data.job.progress.percent >= 0 && progress.data.job.progress.percent < 100, JSON.stringify(progress.data.job.progress));
      } finally {
        await api(h.srv.url, 'GET', '/v1/webhooks', { key: h.a.key }).then(async (l) => {
          for (const e of l.body.data ?? []) await api(h.srv.url, 'DELETE', `/v1/webhooks/${e.id}`, { key: h.a.key });
        });
      }
    });

    test("another org can neither process, read nor download this org's video", async () => {
      const job = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.b.key, body: { input: { asset_id: videoId }, operations: 'scale:height=60' } });
      assert.equal(job.status, 404);
      const sync = await api(h.srv.url, 'POST', '/v1/process', { key: h.b.key, body: { input: { asset_id: videoId }, operations: 'poster', preview: true } });
      assert.equal(sync.status, 404);
      assert.equal((await api(h.srv.url, 'GET', `/v1/assets/${videoId}`, { key: h.b.key })).status, 404);
      assert.equal((await api(h.srv.url, 'POST', `/v1/assets/${videoId}/url`, { key: h.b.key })).status, 404);
    });
  });
}
