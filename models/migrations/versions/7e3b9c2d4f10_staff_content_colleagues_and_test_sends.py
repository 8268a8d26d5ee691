"""staff content, colleagues and test sends: petitions' live content and versions, the
bot's reworded texts, consent versions, invites, two-factor sign-in, staff addresses

Revision ID: 7e3b9c2d4f10
Revises: 5c1e7a9d3b20
Create Date: 2026-12-05 12:43:37.404743
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = '7e3b9c2d4f10'
down_revision = '5c1e7a9d3b20'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bot_texts',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=254), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_bot_texts'))
    )
    op.create_table('consent_versions',
    sa.Column('version', sa.String(length=40), nullable=False),
    sa.Column('consent', sa.Text(), nullable=False),
    sa.Column('updates', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=254), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_consent_versions'))
    )
    op.create_table('content_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('privacy_version', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content_state'))
    )
    op.execute("INSERT INTO content_state (id, revision) VALUES (1, 0)")
    op.create_table('petition_versions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('petition_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('actor', sa.String(length=254), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['petition_id'], ['petitions.id'], name=op.f('fk_petition_versions_petition_id_petitions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_petition_versions')),
    sa.UniqueConstraint('petition_id', 'version', name=op.f('uq_petition_versions_petition_id_version'))
    )
    with op.batch_alter_table('petition_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_petition_versions_petition_id'), ['petition_id'], unique=False)

    op.create_table('staff_addresses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('staff_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('linked_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'], name=op.f('fk_staff_addresses_staff_user_id_staff_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_addresses')),
    sa.UniqueConstraint('staff_user_id', 'channel', name=op.f('uq_staff_addresses_staff_user_id_channel'))
    )
    with op.batch_alter_table('staff_addresses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_addresses_staff_user_id'), ['staff_user_id'], unique=False)

    op.create_table('staff_invites',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['staff_users.id'], name=op.f('fk_staff_invites_created_by_staff_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_invites')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_staff_invites_token_hash'))
    )
    op.create_table('staff_link_codes',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('staff_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'], name=op.f('fk_staff_link_codes_staff_user_id_staff_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('code_hash', name=op.f('pk_staff_link_codes')),
    sa.UniqueConstraint('staff_user_id', name=op.f('uq_staff_link_codes_staff_user_id'))
    )
    with op.batch_alter_table('petitions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content', sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column('content_version', sa.Integer(), nullable=False,
                                      server_default=sa.text('0')))

    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column('password_changed_at', models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('totp_confirmed_at', models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('recovery_codes', sa.JSON(none_as_null=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.drop_column('recovery_codes')
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_confirmed_at')
        batch_op.drop_column('totp_secret')
        batch_op.drop_column('password_changed_at')
        batch_op.drop_column('name')

    with op.batch_alter_table('petitions', schema=None) as batch_op:
        batch_op.drop_column('content_version')
        batch_op.drop_column('content')

    op.drop_table('staff_link_codes')
    op.drop_table('staff_invites')
    with op.batch_alter_table('staff_addresses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_addresses_staff_user_id'))

    op.drop_table('staff_addresses')
    with op.batch_alter_table('petition_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_petition_versions_petition_id'))

    op.drop_table('petition_versions')
    op.drop_table('content_state')
    op.drop_table('consent_versions')
    op.drop_table('bot_texts')
