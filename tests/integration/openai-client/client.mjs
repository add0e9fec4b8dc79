// Drives a tandem server with the stock OpenAI client library and prints what the
// library parsed, as JSON, for test_openai_client.py to check.
import OpenAI from 'openai';

const [, , baseURL, model] = process.argv;
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: 20000 });
const out = {};

const c = await client.completions.create({ model, prompt: 'San Francisco is a', max_tokens: 5 });
out.completion = { id: c.id, object: c.object, text: c.choices[0].text,
                   finish: c.choices[0].finish_reason, usage: c.usage };

const stream = await client.chat.completions.create({
  model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 6, stream: true,
  stream_options: { include_usage: true }, ignore_eos: true,
});
const chat = { roles: [], content: '', finish: null, usage: null, chunks: 0 };
for await (const chunk of stream) {
  chat.chunks++;
  if (chunk.usage) chat.usage = chunk.usage;
  for (const ch of chunk.choices) {
    if (ch.delta?.role) chat.roles.push(ch.delta.role);
    if (ch.delta?.content) chat.content += ch.delta.content;
    if (ch.finish_reason) chat.finish = ch.finish_reason;
  }
}
out.chat_stream = chat;

const cs = await client.completions.create({ model, prompt: 'x', max_tokens: 4, stream: true,
                                             ignore_eos: true });
let text = '';
for await (const chunk of cs) text += chunk.choices[0]?.text ?? '';
out.completion_stream = { text };

try {
  await client.completions.create({ model, prompt: 'x', max_tokens: 'ten' });
  out.error = null;
} catch (e) {
  out.error = { status: e.status, message: e.message, type: e.type ?? e.error?.type ?? null };
}
console.log(JSON.stringify(out));
