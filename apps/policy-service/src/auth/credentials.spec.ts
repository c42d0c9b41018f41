import type { Request } from 'express';
import { readCredential, unverifiedText } from './credentials';

const request = (headers: Record<string, string>) => ({ headers }) as unknown as Request;

describe('readCredential', () => {
  it('tells JWTs, API keys and nothing apart', () => {
    expect(readCredential(request({}))).toEqual({ kind: 'none' });
    expect(readCredential(request({ authorization: 'Bearer eyJ.a.b' }))).toEqual({ kind: 'jwt', value: 'eyJ.a.b' });
    expect(readCredential(request({ authorization: 'bearer pcl_0123456789abcdef_x' }))).toEqual({ kind: 'api-key', value: 'pcl_0123456789abcdef_x' });
    expect(readCredential(request({ 'x-api-key': 'pcl_0123456789abcdef_x' }))).toEqual({ kind: 'api-key', value: 'pcl_0123456789abcdef_x' });
  });

  it('refuses other schemes, two credentials at once and absurd lengths', () => {
    expect(readCredential(request({ authorization: 'Basic YWRtaW46YWRtaW4=' }))).toMatchObject({ kind: 'unusable' });
    expect(readCredential(request({ authorization: 'Bearer a.b.c', 'x-api-key': 'pcl_x' }))).toMatchObject({ kind: 'unusable' });
    expect(readCredential(request({ authorization: `Bearer ${'a'.repeat(9000)}` }))).toMatchObject({ kind: 'unusable' });
  });
});

describe('unverifiedText', () => {
  it('keeps claimed values printable and short', () => {
    expect(unverifiedText('alice\n\u0000')).toBe('alice??');
    expect(unverifiedText('x'.repeat(500))?.length).toBe(201);
    expect(unverifiedText(42)).toBeUndefined();
  });
});
