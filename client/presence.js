// The presence list of a room as pure data: the join reply's list, then each event applied (§7, §8.4).

/**
 * The member list after a presence event. Lists are never mutated: each change makes a new array,
 * so that a UI can compare lists by identity. A member is identified by its `user`.
 *
 * @param {{ user: string, data: unknown }[]} members the current list
 * @param {'join' | 'leave'} event
 * @param {{ user: string, data: unknown }} member
 */
export function applyPresence(members, event, member) {
  const others = members.filter((m) => m.user !== member.user)
  return event === 'join' ? [...others, member] : others
}

/** A member list from the server, keeping only well-formed members. */
export function memberList(list) {
  if (!Array.isArray(list)) return []
  return list.filter(isMember)
}

/** Whether a value is a `{ user, data }` member. */
export function isMember(value) {
  return value !== null && typeof value === 'object' && typeof value.user === 'string'
}
