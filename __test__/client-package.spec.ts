// The roomcast/client and roomcast/react entry points: they resolve through the package's exports
// and never load the native engine (they run in browsers and Next.js client components).

import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const root = path.join(import.meta.dirname, '..')
const clientDir = path.join(root, 'client')

describe('package entry points', () => {
  it('import in Node.js ESM without loading a native addon', () => {
    const script = `
      process.dlopen = (module, file) => { throw new Error('native addon loaded: ' + file) }
      const client = await import('roomcast/client')
      const react = await import('roomcast/react')
      console.log(JSON.stringify([Object.keys(client).sort(), Object.keys(react).sort()]))
    `
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' })
    expect(JSON.parse(out)).toEqual([
      ['Client', 'DEFAULTS', 'PROTOCOL', 'RoomcastError', 'connect', 'reconnectDelay'],
      ['RoomcastProvider', 'usePresence', 'useRoom', 'useRoomEvent', 'useRoomcast', 'useStatus'],
    ])
  })

  it('import nothing but their own modules (and react), none of them Node.js-only', () => {
    const sources = readdirSync(clientDir).filter((file) => file.endsWith('.js'))
    expect(sources).toContain('index.js')
    for (const file of sources) {
      const text = readFileSync(path.join(clientDir, file), 'utf8')
      const specifiers = [...text.matchAll(/^\s*(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1])
      for (const specifier of specifiers) {
        expect(specifier === 'react' || /^\.\/[a-z-]+\.js$/.test(specifier), `${file} imports ${specifier}`).toBe(true)
      }
      expect(text, file).not.toMatch(/\brequire\(|\bprocess\.|\bBuffer\b/)
    }
  })

  it('only roomcast/react imports react', () => {
    for (const file of readdirSync(clientDir).filter((f) => f.endsWith('.js') && f !== 'react.js')) {
      expect(readFileSync(path.join(clientDir, file), 'utf8'), file).not.toMatch(/from 'react'/)
    }
  })
})
