// The chat example in production mode (next build, NODE_ENV=production, the custom server), with
// real browsers: messages between pages, the route handler, a dropped connection resumed from
// history, and a server restart. The scenarios run in order on one server and one browser.

import fs from 'node:fs'
import path from 'node:path'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type ChatPage,
  type ChatServer,
  connectionIdOf,
  freePort,
  launchChromium,
  messageTexts,
  openChat,
  postMessage,
  presenceOf,
  startChatServer,
  waitLive,
  waitMessage,
  waitMessageCount,
  waitPresence,
  waitStatus,
} from './harness'

// The README's picture is refreshed only when asked (`E2E_SCREENSHOT=docs/demo.png npm run
// test:e2e`): a test run leaves the committed files as they are.
const SCREENSHOT = process.env.E2E_SCREENSHOT ? path.resolve(process.env.E2E_SCREENSHOT) : undefined

describe.sequential('the Next.js chat example in Chromium (production build)', () => {
  let server: ChatServer
  let browser: Browser
  let alice: ChatPage
  let bob: ChatPage
  let carol: ChatPage

  beforeAll(async () => {
    server = await startChatServer({ port: await freePort() })
    browser = await launchChromium()
    alice = await openChat(browser, server.origin, 'alice', 'lobby')
    bob = await openChat(browser, server.origin, 'bob', 'lobby')
    carol = await openChat(browser, server.origin, 'carol', 'garden')
    await waitPresence(alice.page, ['alice', 'bob'])
    await waitPresence(bob.page, ['alice', 'bob'])
  })

  afterAll(async () => {
    await browser?.close()
    await server?.stop()
  })

  it('serves the chat page on a direct load, and the page connects', async () => {
    // Server rendering of the page (the sign-in reached it by client-side navigation).
    const response = await carol.page.reload()
    expect(response?.status()).toBe(200)
    await waitLive(carol.page)
    expect(await carol.page.getByTestId('me').textContent()).toBe('carol')
  })

  it('shows a message typed in one page in the other page of the room, and not in another room', async () => {
    const input = alice.page.getByTestId('message-input')
    await input.fill('hello bob, this is alice')
    // The typing indicator goes from browser to browser through roomcast (relay of typing-lobby).
    await bob.page.getByTestId('typing').getByText('alice is typing…').waitFor({ timeout: 10_000 })
    await input.press('Enter')

    await waitMessage(bob.page, 'hello bob, this is alice')
    await waitMessage(alice.page, 'hello bob, this is alice')
    // The server action left alice's own connection out (`except`): bob's was the only one.
    expect(await alice.page.getByTestId('delivered').last().textContent()).toBe('delivered to 1')
    expect(await messageTexts(bob.page)).toEqual(['hello bob, this is alice'])

    // And back, from bob's page.
    await bob.page.getByTestId('message-input').fill('hi alice! all good on this side')
    await bob.page.getByTestId('message-input').press('Enter')
    await waitMessage(alice.page, 'hi alice! all good on this side')

    // carol, in another room, gets a message of her own room but never alice's.
    const garden = await postMessage(server.origin, carol, 'garden', { text: 'roses in the garden' })
    expect(garden).toEqual({ status: 200, json: expect.objectContaining({ delivered: 1 }) })
    await waitMessage(carol.page, 'roses in the garden')
    expect(await messageTexts(carol.page)).toEqual(['roses in the garden'])
  })

  it('delivers a POST to the route handler to both pages and reports 2 delivered', async () => {
    const answer = await postMessage(server.origin, bob, 'lobby', { text: 'posted to the route handler' })
    expect(answer.status).toBe(200)
    expect(answer.json.delivered).toBe(2)
    await waitMessage(alice.page, 'posted to the route handler')
    await waitMessage(bob.page, 'posted to the route handler')

    // Malformed bodies are refused before anything is published.
    expect((await postMessage(server.origin, bob, 'lobby', { text: '' })).status).toBe(400)
    expect((await postMessage(server.origin, bob, 'lobby', { except: 3, text: 'x' })).status).toBe(400)

    // The README's picture (docs/demo.png): alice's page, two users online, bob typing.
    await bob.page.getByTestId('message-input').fill('typing a reply…')
    await alice.page.getByTestId('typing').getByText('bob is typing…').waitFor({ timeout: 10_000 })
    if (SCREENSHOT) fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true })
    const png = await alice.page.screenshot({ path: SCREENSHOT })
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG')
    await bob.page.getByTestId('message-input').fill('')
  })

  it('after a dropped connection, shows the messages broadcast meanwhile, all, in order, once', async () => {
    const before = await connectionIdOf(alice.page)
    // Kept away (her upgrades refused) until the messages are out, whatever her reconnect timing.
    const hold = (held: boolean) =>
      fetch(`${server.origin}/api/e2e/hold?user=alice&held=${held ? 1 : 0}`, { method: 'POST' })
    expect((await hold(true)).status).toBe(200)
    const dropped = await fetch(`${server.origin}/api/e2e/disconnect`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ connectionId: before }),
    })
    expect(await dropped.json()).toEqual({ disconnected: true })
    await waitStatus(alice.page, 'reconnecting')

    // alice cannot be back before she is let in: these reach bob alone, live.
    const missed = ['missed 1: while alice was away', 'missed 2: still away', 'missed 3: almost back']
    for (const text of missed) {
      const answer = await postMessage(server.origin, bob, 'lobby', { text })
      expect(answer).toEqual({ status: 200, json: expect.objectContaining({ delivered: 1 }) })
    }
    expect((await hold(false)).status).toBe(200)

    // Her backoff may have grown while she was refused: up to 10 s between attempts.
    await waitLive(alice.page, 45_000)
    await waitMessageCount(alice.page, 'missed ', missed.length)
    expect((await messageTexts(alice.page)).filter((text) => text.startsWith('missed '))).toEqual(missed)
    expect(await connectionIdOf(alice.page)).not.toBe(before)
    // Resumed from history: nothing was lost, so no "reload" notice.
    expect(await alice.page.getByTestId('reset-notice').count()).toBe(0)
    expect((await messageTexts(bob.page)).filter((text) => text.startsWith('missed '))).toEqual(missed)
  })

  it('reconnects both pages by themselves after a server restart', async () => {
    await server.stop()
    await Promise.all([waitStatus(alice.page, 'reconnecting'), waitStatus(bob.page, 'reconnecting')])

    server = await startChatServer({ port: server.port })
    // The client's backoff tops out at 10 s between attempts.
    await Promise.all([waitLive(alice.page, 45_000), waitLive(bob.page, 45_000)])
    await Promise.all([waitPresence(alice.page, ['alice', 'bob']), waitPresence(bob.page, ['alice', 'bob'])])
    expect(await presenceOf(alice.page)).toEqual(['alice', 'bob'])
    expect(await presenceOf(bob.page)).toEqual(['alice', 'bob'])

    const answer = await postMessage(server.origin, alice, 'lobby', { text: 'after the restart' })
    expect(answer).toEqual({ status: 200, json: expect.objectContaining({ delivered: 2 }) })
    await waitMessage(alice.page, 'after the restart')
    await waitMessage(bob.page, 'after the restart')
    // The history died with the server (a new epoch): the pages say they may have missed something.
    await alice.page.getByTestId('reset-notice').waitFor({ timeout: 5_000 })
    await bob.page.getByTestId('reset-notice').waitFor({ timeout: 5_000 })
  })
})
