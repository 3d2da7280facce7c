// What the end-to-end tests share: the example's custom server as a child process on a free port
// of 127.0.0.1, Debian's Chromium through playwright-core, and waits on what a page shows.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import path from 'node:path'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'
export const EXAMPLE = path.resolve(__dirname, '..', 'examples', 'nextjs-chat')
/** The secret the server signs sessions with in these tests. */
const SECRET = 'e2e-secret'

/** How long a server gets to say it is ready: next dev compiles on demand, so this is about startup. */
const READY_TIMEOUT_MS = 60_000
/** How long a server gets to exit after SIGTERM before it is killed. */
const EXIT_TIMEOUT_MS = 10_000

/** A port that was free on 127.0.0.1 a moment ago (the server is started on it next). */
export async function freePort(): Promise<number> {
  const probe = net.createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as net.AddressInfo
  probe.close()
  await once(probe, 'close')
  return port
}

export interface ChatServer {
  readonly port: number
  readonly origin: string
  readonly child: ChildProcess
  /** Everything the server printed (for failure messages). */
  output(): string
  /** SIGTERM to this server's process, SIGKILL if it has not exited within 10 s. */
  stop(): Promise<void>
}

/**
 * Starts examples/nextjs-chat's compiled custom server (dist/server.js) on `port`, in production
 * mode (`next build` output) or with `next dev`, and resolves once it listens.
 */
export async function startChatServer({ port, dev = false }: { port: number; dev?: boolean }): Promise<ChatServer> {
  const child = spawn(process.execPath, ['dist/server.js'], {
    cwd: EXAMPLE,
    env: {
      ...process.env,
      NODE_ENV: dev ? 'development' : 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      CHAT_SESSION_SECRET: SECRET,
      ROOMCAST_E2E: '1',
      NEXT_TELEMETRY_DISABLED: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const collect = (chunk: Buffer) => {
    output += chunk.toString('utf8')
  }
  child.stdout!.on('data', collect)
  child.stderr!.on('data', collect)
  const exited = once(child, 'exit')

  const server: ChatServer = {
    port,
    origin: `http://127.0.0.1:${port}`,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), EXIT_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    },
  }

  const deadline = Date.now() + READY_TIMEOUT_MS
  try {
    while (!/Ready on http:\/\/\S+:\d+/.test(output)) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`the chat server did not get ready in ${READY_TIMEOUT_MS} ms`)
      const signal = AbortSignal.timeout(left)
      const event = await Promise.race([
        once(child.stdout!, 'data', { signal }).then(() => 'data' as const),
        exited.then(() => 'exit' as const),
      ]).catch(() => 'timeout' as const)
      if (event === 'exit') throw new Error('the chat server exited before it was ready')
    }
  } catch (error) {
    await server.stop()
    throw new Error(`${(error as Error).message}; its output:\n${output}`)
  }
  return server
}

/** Debian's Chromium, headless. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  })
}

export interface ChatPage {
  readonly name: string
  readonly context: BrowserContext
  readonly page: Page
}

/**
 * A user in a browser context of their own (cookies are per context): signs in as `name` through
 * the form, lands on the room's page, and waits until the page is live in the chat room.
 * `onPage` sees the page before it loads anything; `timeout` bounds each step (next dev compiles
 * routes on their first request).
 */
export async function openChat(
  browser: Browser,
  origin: string,
  name: string,
  room: string,
  { onPage, timeout = 30_000 }: { onPage?: (page: Page) => void; timeout?: number } = {},
): Promise<ChatPage> {
  const context = await browser.newContext({ baseURL: origin, viewport: { width: 1000, height: 640 } })
  context.setDefaultTimeout(timeout)
  const page = await context.newPage()
  onPage?.(page)
  await page.goto(`/?room=${room}`)
  await page.getByTestId('name').fill(name)
  await page.getByTestId('room').fill(room)
  await page.getByTestId('sign-in').click()
  await page.waitForURL(`**/rooms/${room}`)
  await waitLive(page, timeout)
  return { name, context, page }
}

/** Waits until the page's connection is open and its chat room joined on it. */
export async function waitLive(page: Page, timeout = 30_000): Promise<void> {
  await page.locator('[data-testid="status"][data-live="true"]').waitFor({ timeout })
}

/** Waits until the page shows `status` ('open', 'reconnecting', …). */
export async function waitStatus(page: Page, status: string, timeout = 30_000): Promise<void> {
  await page.waitForFunction(
    (expected) => document.querySelector('[data-testid="status"]')?.textContent === expected,
    status,
    { timeout },
  )
}

/** The texts of the messages the page shows, top to bottom. */
export function messageTexts(page: Page): Promise<string[]> {
  return page.getByTestId('message-text').allTextContents()
}

/** Waits until the page shows a message with exactly this text. */
export async function waitMessage(page: Page, text: string, timeout = 15_000): Promise<void> {
  await page.getByTestId('message-text').getByText(text, { exact: true }).waitFor({ timeout })
}

/** Waits until the page shows `count` messages that start with `prefix`. */
export async function waitMessageCount(page: Page, prefix: string, count: number, timeout = 30_000): Promise<void> {
  await page.waitForFunction(
    ([start, expected]) =>
      Array.from(document.querySelectorAll('[data-testid="message-text"]')).filter((node) =>
        node.textContent?.startsWith(start as string),
      ).length === expected,
    [prefix, count] as const,
    { timeout },
  )
}

/** The users the page lists as online, sorted. */
export async function presenceOf(page: Page): Promise<string[]> {
  const users = await page
    .locator('[data-testid="presence"] li')
    .evaluateAll((items) => items.map((item) => item.getAttribute('data-user') ?? ''))
  return users.sort()
}

/** Waits until the page lists exactly `users` as online. */
export async function waitPresence(page: Page, users: string[], timeout = 30_000): Promise<void> {
  const expected = [...users].sort().join(',')
  await page.waitForFunction(
    (want) =>
      Array.from(document.querySelectorAll('[data-testid="presence"] li'))
        .map((item) => item.getAttribute('data-user') ?? '')
        .sort()
        .join(',') === want,
    expected,
    { timeout },
  )
}

/** The page's current connection id, once the server told it. */
export async function connectionIdOf(page: Page): Promise<string> {
  const id = page.getByTestId('connection-id')
  await id.waitFor({ timeout: 15_000 })
  return (await id.textContent()) ?? ''
}

/** The `Cookie` header of a page's session, to call the route handler as that user. */
export async function cookieHeader(chat: ChatPage): Promise<string> {
  const cookies = await chat.context.cookies()
  return cookies.map((cookie) => `${cookie.name}=${cookie.value}`).join('; ')
}

/** POST /api/rooms/<room>/messages as `chat`'s user; resolves with the status and the JSON answer. */
export async function postMessage(
  origin: string,
  chat: ChatPage,
  room: string,
  body: unknown,
): Promise<{ status: number; json: { delivered?: number; error?: string } }> {
  const response = await fetch(`${origin}/api/rooms/${room}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie: await cookieHeader(chat) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  })
  return { status: response.status, json: await response.json() }
}
